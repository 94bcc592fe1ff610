//! Builds the browser console's assets (issue 13): installs the terminal emulator exactly as
//! `console/package-lock.json` pins it (`npm ci`: integrity-checked, no install scripts) into
//! `OUT_DIR`, from where `src/web/console.rs` includes the files into the binary. Runs again
//! only when the lock changes; nothing built is committed.

use std::path::PathBuf;
use std::process::Command;
use std::{env, fs};

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-changed=console/package.json");
    println!("cargo:rerun-if-changed=console/package-lock.json");
    let src = PathBuf::from(env::var("CARGO_MANIFEST_DIR").expect("cargo sets it")).join("console");
    let out = PathBuf::from(env::var("OUT_DIR").expect("cargo sets it")).join("console");
    fs::create_dir_all(&out).expect("OUT_DIR is writable");
    let lock = fs::read(src.join("package-lock.json")).expect("panel/console/package-lock.json");
    let stamp = out.join(".built-from-lock");
    let want = ["@xterm/xterm/lib/xterm.js", "@xterm/xterm/css/xterm.css", "@xterm/addon-fit/lib/addon-fit.js"];
    if fs::read(&stamp).ok().as_deref() == Some(&lock[..]) && want.iter().all(|f| out.join("node_modules").join(f).exists()) {
        return;
    }
    for f in ["package.json", "package-lock.json"] {
        fs::copy(src.join(f), out.join(f)).expect("copy the console's package files");
    }
    let status =
        Command::new("npm").args(["ci", "--ignore-scripts", "--no-audit", "--no-fund", "--loglevel=error"]).current_dir(&out).status();
    match status {
        Ok(s) if s.success() => {}
        Ok(s) => panic!("`npm ci` for the console's assets failed ({s}); it needs the npm registry (see panel/README.md)"),
        Err(e) => panic!("building the panel needs npm for the console's assets (Debian: apt-get install npm): {e}"),
    }
    for f in want {
        assert!(out.join("node_modules").join(f).exists(), "npm ci did not install {f}");
    }
    fs::write(&stamp, &lock).expect("write the stamp");
}
