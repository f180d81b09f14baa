//! A full Linux kernel for what this machine's kernel lacks (ipvlan, VLAN,
//! bonding, vrf): boot Debian's kernel under qemu with software emulation,
//! share this machine's root read-only over virtio-9p, and run one command
//! inside; its output and exit status come back as if it had run here.
//!
//! Inside, the command sees the same files (the workspace, its binaries, etcd
//! and the CNI plugins), with tmpfs on `/tmp`, `/run` and `/var/lib` so it can
//! write, and every network module loaded. Nothing it writes survives the VM.
//!
//! Why qemu and not a container: the point is a different kernel. Why TCG:
//! `/dev/kvm` exists on these machines but does not work (`RAILYARD_VM_ACCEL`
//! picks another accelerator where one does).

mod cpio;
mod kernel;

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

pub use kernel::{Kernel, NET_MODULES};

use crate::error::{Error, Result};

/// What the VM prints before the command's first line and after its last;
/// everything outside is firmware and kernel noise (the power-off message).
const BEGIN: &str = "@@railyard-vm: command starts@@";
const END: &str = "@@railyard-vm: command ended@@";

#[derive(Debug, Clone)]
pub struct VmConfig {
    pub memory_mb: u32,
    pub cpus: u32,
    /// The whole run, boot included; the VM is killed after it.
    pub timeout: Duration,
    /// Copy the command's output to this process's stdout as it comes.
    pub echo: bool,
    /// The working directory inside (the same path as here).
    pub cwd: PathBuf,
    /// Variables set for the command, in addition to PATH and HOME.
    pub env: Vec<(String, String)>,
}

impl Default for VmConfig {
    fn default() -> Self {
        VmConfig {
            memory_mb: 4096,
            cpus: 2,
            timeout: Duration::from_secs(900),
            echo: false,
            cwd: std::env::current_dir().unwrap_or_else(|_| PathBuf::from("/")),
            env: Vec::new(),
        }
    }
}

impl VmConfig {
    /// Passes on this process's variables that the tests and binaries read:
    /// RUST_LOG, RUST_BACKTRACE and every `RAILYARD_*` one.
    pub fn inherit_env(mut self) -> Self {
        for (k, v) in std::env::vars() {
            if k.starts_with("RAILYARD_") || k == "RUST_LOG" || k == "RUST_BACKTRACE" {
                self.env.push((k, v));
            }
        }
        self
    }
}

/// What the command printed (stdout and stderr together, in order) and how it
/// ended.
#[derive(Debug, Clone)]
pub struct VmOutput {
    pub status: i32,
    pub output: String,
    pub kernel: String,
    pub elapsed: Duration,
}

impl VmOutput {
    pub fn success(&self) -> bool {
        self.status == 0
    }
}

/// Boots the VM, runs `argv` in it, and returns when the VM is off.
pub fn run(argv: &[String], cfg: &VmConfig) -> Result<VmOutput> {
    if argv.is_empty() {
        return Err(Error::Refused("the VM needs a command to run".into()));
    }
    let started = Instant::now();
    let kernel = Kernel::find()?;
    let job = JobDir::new()?;
    job.write("initrd.cpio", &initramfs(&kernel, &shadowed(argv, cfg))?)?;
    job.write("boot.sh", boot_script(argv, cfg).as_bytes())?;

    let qemu = "qemu-system-x86_64";
    let accel = std::env::var("RAILYARD_VM_ACCEL").unwrap_or_else(|_| "tcg".into());
    let mut command = Command::new(qemu);
    command
        .args(["-accel", &accel, "-machine", "q35"])
        .args([
            "-m",
            &cfg.memory_mb.to_string(),
            "-smp",
            &cfg.cpus.to_string(),
        ])
        .args(["-display", "none", "-monitor", "none", "-serial", "stdio"])
        .args(["-no-reboot", "-nic", "none"])
        .arg("-kernel")
        .arg(&kernel.image)
        .arg("-initrd")
        .arg(job.path("initrd.cpio"))
        .args([
            "-append",
            "console=ttyS0 quiet loglevel=1 panic=-1 rdinit=/init",
        ])
        .args([
            "-virtfs",
            "local,path=/,mount_tag=host,security_model=none,readonly=on,multidevs=remap",
        ])
        .arg("-virtfs")
        .arg(format!(
            "local,path={},mount_tag=job,security_model=none",
            job.dir.display()
        ))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = command.spawn().map_err(|e| {
        Error::Missing(format!(
            "cannot start {qemu}: {e} (run `make deps`, which installs qemu-system-x86)"
        ))
    })?;

    // Lines come through a channel so the wait below can time out.
    let (tx, rx) = mpsc::channel::<String>();
    let stdout = child.stdout.take();
    let reader = std::thread::spawn(move || {
        if let Some(out) = stdout {
            for line in BufReader::new(out).split(b'\n').map_while(|l| l.ok()) {
                let line = String::from_utf8_lossy(&line)
                    .trim_end_matches('\r')
                    .to_owned();
                if tx.send(line).is_err() {
                    return;
                }
            }
        }
    });
    let mut boot_log = Vec::new();
    let mut output = String::new();
    let (mut begun, mut ended) = (false, false);
    let deadline = started + cfg.timeout;
    let timed_out = loop {
        let now = Instant::now();
        if now >= deadline {
            break true;
        }
        match rx.recv_timeout(deadline - now) {
            Ok(line) if !begun => {
                begun = line.contains(BEGIN);
                boot_log.push(line);
            }
            Ok(line) if ended || line.contains(END) => ended = true,
            Ok(line) => {
                if cfg.echo {
                    println!("{line}");
                    let _ = std::io::stdout().flush();
                }
                output.push_str(&line);
                output.push('\n');
            }
            Err(mpsc::RecvTimeoutError::Timeout) => break true,
            Err(mpsc::RecvTimeoutError::Disconnected) => break false,
        }
    };
    if timed_out {
        let _ = child.kill();
    }
    let exit = child
        .wait()
        .map_err(|e| Error::io("waiting for qemu", qemu, e))?;
    let _ = reader.join();
    let stderr = child
        .stderr
        .take()
        .map(|mut s| {
            let mut text = String::new();
            let _ = std::io::Read::read_to_string(&mut s, &mut text);
            text
        })
        .unwrap_or_default();
    if timed_out {
        return Err(Error::Timeout {
            what: format!("the VM running {argv:?}"),
            secs: cfg.timeout.as_secs_f64(),
            detail: tail(&output, &boot_log),
        });
    }
    let status = std::fs::read_to_string(job.path("status"))
        .ok()
        .and_then(|s| s.trim().parse::<i32>().ok())
        .ok_or_else(|| Error::Command {
            command: format!("{qemu} (VM running {argv:?})"),
            output: format!(
                "the VM stopped without the command's exit status (qemu {exit}); {}{}",
                stderr.trim(),
                tail(&output, &boot_log)
            ),
        })?;
    Ok(VmOutput {
        status,
        output,
        kernel: kernel.release,
        elapsed: started.elapsed(),
    })
}

/// The directories the VM's tmpfs mounts would hide that this run needs: the
/// working directory, this executable and absolute paths in the command,
/// when they live under /tmp, /run or /var/lib (a CI checkout in /tmp). Each
/// is kept as its top directory there (`/tmp/ci-clone/x/y` -> `/tmp/ci-clone`).
fn shadowed(argv: &[String], cfg: &VmConfig) -> Vec<String> {
    let mut paths: Vec<PathBuf> = vec![cfg.cwd.clone()];
    paths.extend(std::env::current_exe().ok());
    paths.extend(
        argv.iter()
            .filter(|a| a.starts_with('/'))
            .map(PathBuf::from),
    );
    let mut keep: Vec<String> = Vec::new();
    for p in paths {
        let p = p.canonicalize().unwrap_or(p);
        let parts: Vec<String> = p
            .components()
            .skip(1)
            .map(|c| c.as_os_str().to_string_lossy().into_owned())
            .collect();
        let top = match parts.as_slice() {
            [a, b, ..] if a == "tmp" || a == "run" => format!("/{a}/{b}"),
            [a, b, c, ..] if a == "var" && b == "lib" => format!("/var/lib/{c}"),
            _ => continue,
        };
        // The runner's own job dir is mounted separately; quotes would break sh.
        if !keep.contains(&top) && !top.contains(['"', '\'', '$', '`', '\\', ' ']) {
            keep.push(top);
        }
    }
    keep
}

/// The last lines seen, for an error message: the command's if it started,
/// else the boot's.
fn tail(output: &str, boot_log: &[String]) -> String {
    let lines: Vec<&str> = if output.is_empty() {
        boot_log.iter().map(String::as_str).collect()
    } else {
        output.lines().collect()
    };
    let from = lines.len().saturating_sub(30);
    format!("\nlast lines:\n{}", lines[from..].join("\n"))
}

/// The initramfs: busybox, the 9p modules, and an init that mounts the shared
/// root and hands over to the job's boot script.
fn initramfs(kernel: &Kernel, keep: &[String]) -> Result<Vec<u8>> {
    let busybox = Path::new("/bin/busybox");
    let busybox_bytes = std::fs::read(busybox).map_err(|e| {
        Error::io(
            "reading busybox (run `make deps`, which installs busybox-static)",
            busybox,
            e,
        )
    })?;
    let mut a = cpio::Archive::default();
    for d in ["bin", "dev", "proc", "sys", "newroot", "modules"] {
        a.dir(d);
    }
    a.file("bin/busybox", 0o755, &busybox_bytes);
    let mut inserts = String::new();
    for (i, path) in kernel.boot_modules()?.iter().enumerate() {
        let bytes = std::fs::read(path).map_err(|e| Error::io("reading a module", path, e))?;
        let name = format!("modules/{i:02}.ko");
        a.file(&name, 0o644, &bytes);
        inserts.push_str(&format!(
            "insmod /{name} || fail \"insmod {}\"\n",
            path.display()
        ));
    }
    a.file("init", 0o755, init_script(&inserts, keep).as_bytes());
    Ok(a.finish())
}

fn init_script(inserts: &str, keep: &[String]) -> String {
    let (mut keep_hold, mut keep_back) = (String::new(), String::new());
    for (i, dir) in keep.iter().enumerate() {
        keep_hold.push_str(&format!(
            "mkdir -p /hold/{i} && mount --bind /newroot{dir} /hold/{i} || fail \"holding {dir}\"\n"
        ));
        keep_back.push_str(&format!(
            "mkdir -p /newroot{dir} && mount --move /hold/{i} /newroot{dir} || fail \"restoring {dir}\"\n"
        ));
    }
    format!(
        r#"#!/bin/busybox sh
/bin/busybox --install -s /bin
fail() {{ echo "railyard-vm: $1 failed" > /dev/console; echo o > /proc/sysrq-trigger; sleep 5; }}
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
echo 1 > /proc/sys/kernel/sysrq
{inserts}
mount -t 9p -o trans=virtio,version=9p2000.L,ro,msize=512000 host /newroot || fail "mounting the shared root"
# Directories this run needs that the tmpfs below would hide (a checkout
# under /tmp): held aside by a bind mount, then put back on top.
mkdir -p /hold
{keep_hold}for d in tmp run var/lib; do mount -t tmpfs -o mode=1777 tmpfs /newroot/$d || fail "tmpfs on /$d"; done
{keep_back}mkdir -p /newroot/run/vm
mount -t 9p -o trans=virtio,version=9p2000.L,msize=512000 job /newroot/run/vm || fail "mounting the job dir"
mount --move /proc /newroot/proc
mount --move /sys /newroot/sys
mount --move /dev /newroot/dev
exec switch_root /newroot /bin/sh /run/vm/boot.sh
"#
    )
}

/// Runs as pid 1 in the shared root: finish the system's setup, run the
/// command, record its status, power off.
fn boot_script(argv: &[String], cfg: &VmConfig) -> String {
    let mut s = String::from(
        "#!/bin/sh\n\
         export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin HOME=/tmp\n\
         mkdir -p /dev/pts /dev/shm\n\
         mount -t devpts devpts /dev/pts\n\
         mount -t tmpfs tmpfs /dev/shm\n\
         mount -t cgroup2 cgroup2 /sys/fs/cgroup 2>/dev/null\n\
         ip link set lo up\n",
    );
    for m in NET_MODULES {
        s.push_str(&format!(
            "modprobe {m} || echo 'railyard-vm: modprobe {m} failed'\n"
        ));
    }
    for (k, v) in &cfg.env {
        s.push_str(&format!("export {k}={}\n", quote(v)));
    }
    s.push_str(&format!(
        "cd {} || exit 1\n",
        quote(&cfg.cwd.display().to_string())
    ));
    s.push_str(&format!("echo '{BEGIN}'\n"));
    let command: Vec<String> = argv.iter().map(|a| quote(a)).collect();
    s.push_str(&format!("{} 2>&1\n", command.join(" ")));
    s.push_str("status=$?\n");
    s.push_str(&format!("echo '{END}'\n"));
    s.push_str("echo $status > /run/vm/status\nsync\necho o > /proc/sysrq-trigger\nsleep 10\n");
    s
}

/// Single-quoted for sh: nothing inside is expanded.
fn quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// A directory of this run's files, shared writable with the VM; removed after.
struct JobDir {
    dir: PathBuf,
}

impl JobDir {
    fn new() -> Result<JobDir> {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let dir = std::env::temp_dir().join(format!("railyard-vm-{}-{nanos}", std::process::id()));
        std::fs::create_dir_all(&dir).map_err(|e| Error::io("creating the VM job dir", &dir, e))?;
        Ok(JobDir { dir })
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    fn write(&self, name: &str, bytes: &[u8]) -> Result<()> {
        let path = self.path(name);
        std::fs::write(&path, bytes).map_err(|e| Error::io("writing a VM job file", path, e))
    }
}

impl Drop for JobDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn directories_the_tmpfs_would_hide_are_kept() {
        let cfg = VmConfig {
            cwd: PathBuf::from("/tmp/ci-clone/tests"),
            ..VmConfig::default()
        };
        let keep = shadowed(&["/var/lib/x/y/bin".into(), "/usr/bin/true".into()], &cfg);
        assert!(keep.contains(&"/tmp/ci-clone".to_owned()), "{keep:?}");
        assert!(keep.contains(&"/var/lib/x".to_owned()), "{keep:?}");
        assert!(!keep.iter().any(|k| k.starts_with("/usr")), "{keep:?}");
        let init = init_script("", &keep);
        let hold = init
            .find("mount --bind /newroot/tmp/ci-clone")
            .expect("held");
        let tmpfs = init.find("mount -t tmpfs").expect("tmpfs");
        let back = init
            .find("mount --move /hold/0 /newroot/tmp/ci-clone")
            .expect("back");
        assert!(hold < tmpfs && tmpfs < back, "{init}");
    }

    #[test]
    fn arguments_reach_the_shell_unexpanded() {
        assert_eq!(quote("a b"), "'a b'");
        assert_eq!(quote("it's $HOME"), r"'it'\''s $HOME'");
        let s = boot_script(
            &["sh".into(), "-c".into(), "echo $1".into()],
            &VmConfig::default(),
        );
        assert!(s.contains("'sh' '-c' 'echo $1' 2>&1\n"), "{s}");
        assert!(s.contains("echo $status > /run/vm/status"));
    }
}
