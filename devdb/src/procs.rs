//! Finding a test's own child processes by an argument only they carry (e.g. Chromium's
//! `--user-data-dir=<a fresh temporary directory>`), so a test can make sure nothing of its
//! run outlives it. Shared by the panel's browser tests and the end-to-end tests.

use std::path::Path;

/// Processes whose command line has exactly `arg` among its arguments.
pub fn pids_with_arg(arg: &str) -> Vec<i32> {
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<i32>() else { continue };
        if let Ok(cmd) = std::fs::read(format!("/proc/{pid}/cmdline")) {
            if cmd.split(|b| *b == 0).any(|a| a == arg.as_bytes()) {
                out.push(pid);
            }
        }
    }
    out
}

/// The Chromium processes using `profile` as their profile directory.
pub fn chromium_pids(profile: &Path) -> Vec<i32> {
    pids_with_arg(&format!("--user-data-dir={}", profile.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_a_child_by_its_argument_and_not_after_it_ends() {
        let marker = format!("--vessel-procs-test={}", std::process::id());
        // `$0` of the shell carries the marker; the `; true` keeps the shell from exec'ing sleep.
        let mut child = std::process::Command::new("sh").args(["-c", "sleep 30; true", &marker]).spawn().expect("a shell starts");
        let pid = child.id() as i32;
        let mut seen = Vec::new();
        for _ in 0..50 {
            seen = pids_with_arg(&marker);
            if !seen.is_empty() {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        assert_eq!(seen, vec![pid]);
        child.kill().unwrap();
        child.wait().unwrap();
        assert!(pids_with_arg(&marker).is_empty());
    }
}
