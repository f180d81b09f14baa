//! `railyard-vm -- COMMAND...`: runs a command inside a full Linux kernel
//! (Debian's, under qemu) that shares this machine's files, and exits with its
//! status. See `railyard_e2e::vm`.

use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use railyard_e2e::vm::{self, VmConfig};

#[derive(Parser, Debug)]
#[command(name = "railyard-vm", about = "Run a command in a full-kernel VM")]
struct Args {
    /// Memory of the VM in MiB.
    #[arg(long, default_value_t = 4096)]
    memory: u32,
    /// CPUs of the VM.
    #[arg(long, default_value_t = 2)]
    cpus: u32,
    /// Seconds before the VM is killed, boot included.
    #[arg(long, default_value_t = 900)]
    timeout: u64,
    /// The command and its arguments.
    #[arg(required = true, trailing_var_arg = true)]
    command: Vec<String>,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let cfg = VmConfig {
        memory_mb: args.memory,
        cpus: args.cpus,
        timeout: Duration::from_secs(args.timeout),
        echo: true,
        ..VmConfig::default()
    }
    .inherit_env();
    match vm::run(&args.command, &cfg) {
        Ok(out) => {
            eprintln!(
                "railyard-vm: exit {} after {:.1} s in kernel {}",
                out.status,
                out.elapsed.as_secs_f64(),
                out.kernel
            );
            ExitCode::from(u8::try_from(out.status).unwrap_or(1))
        }
        Err(e) => {
            eprintln!("railyard-vm: {e}");
            ExitCode::from(125)
        }
    }
}
