//! `railyard-crdgen DIR` writes railyard's CRDs into DIR; `railyard-crdgen --check
//! DIR` exits 1 when the YAML there differs from what the Rust types generate.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use railyard_k8s::crdgen;

#[derive(Parser)]
#[command(
    name = "railyard-crdgen",
    version,
    about = "Generate railyard's CRD YAML"
)]
struct Args {
    /// Compare instead of writing; exit 1 on any difference.
    #[arg(long)]
    check: bool,
    /// The directory (deploy/kubernetes/crds in the repository).
    dir: PathBuf,
}

fn main() -> ExitCode {
    let args = Args::parse();
    if args.check {
        match crdgen::check(&args.dir) {
            Ok(drift) if drift.is_empty() => ExitCode::SUCCESS,
            Ok(drift) => {
                for d in drift {
                    eprintln!("{d}");
                }
                eprintln!(
                    "regenerate with: cargo run -p railyard-k8s --bin railyard-crdgen -- {}",
                    args.dir.display()
                );
                ExitCode::FAILURE
            }
            Err(e) => {
                eprintln!("error: {e}");
                ExitCode::FAILURE
            }
        }
    } else {
        match crdgen::write(&args.dir) {
            Ok(paths) => {
                for p in paths {
                    println!("{}", p.display());
                }
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("error: {e}");
                ExitCode::FAILURE
            }
        }
    }
}
