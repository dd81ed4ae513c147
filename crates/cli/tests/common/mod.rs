//! What the binary's test files share: running `portcullis` and a fresh directory per test.

#![allow(dead_code, clippy::unwrap_used)]

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, Command, Output, Stdio};

/// Runs `portcullis` with `args`, feeding it `stdin`.
pub fn run(args: &[&str], stdin: &str) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_portcullis"))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(stdin.as_bytes()).unwrap();
    child.wait_with_output().unwrap()
}

/// An empty directory of this test's own.
pub fn temp(name: &str) -> tempfile::TempDir {
    tempfile::Builder::new().prefix(&format!("portcullis-cli-{name}-")).tempdir().unwrap()
}

/// Starts `portcullis serve` as `command` sets it up and waits until it says it is serving; returns the process
/// and the log so far. The rest of the log is drained in the background, so the server never blocks on it.
pub fn serve(mut command: Command) -> (Child, String) {
    let mut child = command.arg("serve").stdout(Stdio::null()).stderr(Stdio::piped()).spawn().unwrap();
    let mut stderr = BufReader::new(child.stderr.take().unwrap());
    let mut seen = String::new();
    while !seen.contains("portcullis is serving") {
        let mut line = String::new();
        if stderr.read_line(&mut line).unwrap() == 0 {
            panic!("serve exited: {seen}");
        }
        seen.push_str(&line);
    }
    std::thread::spawn(move || std::io::copy(&mut stderr, &mut std::io::sink()));
    (child, seen)
}

/// A `portcullis` command to build on.
pub fn portcullis() -> Command {
    Command::new(env!("CARGO_BIN_EXE_portcullis"))
}
