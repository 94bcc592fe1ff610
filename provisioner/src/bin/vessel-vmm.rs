//! The VMM alone: `vessel-vmm vm run --config <file>`, the same arguments and behaviour as
//! `provisioner vm run`, in a binary without the daemon (actix, tokio, rustls, the container
//! runtime). Each machine is one such process, so the pages of its own program it touches
//! are part of its overhead: measured with the test kernel, `provisioner vm run` held
//! ~4.8 MiB of its 16 MB program resident, most of the VMM's overhead once guest RAM and the
//! kernel image are accounted for. The daemon runs this binary when it is installed beside
//! `provisioner` (see `daemon::vmm_binary`).

use std::process::ExitCode;

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()))
        .with_writer(std::io::stderr)
        .init();
    let args: Vec<String> = std::env::args().skip(1).collect();
    let config = match args.as_slice() {
        [vm, run, flag, path] if vm == "vm" && run == "run" && flag == "--config" => path,
        _ => {
            eprintln!("usage: vessel-vmm vm run --config <file>");
            return ExitCode::from(2);
        }
    };
    let cfg = match provisioner::vm::config::VmConfig::load(std::path::Path::new(config)) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: loading the VM config: {e}");
            return ExitCode::FAILURE;
        }
    };
    match provisioner::vm::vmm::run(&cfg) {
        Ok(_) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: running the machine: {e}");
            ExitCode::FAILURE
        }
    }
}
