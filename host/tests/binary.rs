//! The `pingvas` binary starts, migrates a fresh SQLite data dir, and serves
//! with nothing but defaults; SIGTERM stops it gracefully.

use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Command, Stdio};

#[test]
fn migrate_creates_the_sqlite_file() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_pingvas"))
        .arg("migrate")
        .current_dir(dir.path())
        .env_remove("DATABASE_URL")
        .env_remove("PINGVAS_DATA_DIR")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(dir.path().join("data/pingvas.db").exists());
}

#[cfg(unix)]
#[test]
fn serve_with_defaults_then_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut child = Command::new(env!("CARGO_BIN_EXE_pingvas"))
        .arg("serve")
        .current_dir(dir.path())
        .env_remove("DATABASE_URL")
        .env_remove("PINGVAS_DATA_DIR")
        .env("PINGVAS_ADDR", format!("127.0.0.1:{port}"))
        .env("PINGVAS_LOG_FORMAT", "json")
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let mut saw_secret_notice = false;
    loop {
        let line = lines.next().expect("server exited early").unwrap();
        assert!(line.starts_with('{'), "JSON log lines: {line}");
        saw_secret_notice |= line.contains("generated one and saved it");
        if line.contains("pingvas listening") {
            break;
        }
    }
    assert!(
        saw_secret_notice,
        "first start says it generated a JWT secret"
    );
    assert!(dir.path().join("data/jwt_secret").exists());
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut resp = String::new();
    stream.read_to_string(&mut resp).unwrap();
    assert!(resp.starts_with("HTTP/1.1 200"), "{resp}");
    let pid = child.id().to_string();
    assert!(
        Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success()
    );
    let status = child.wait().unwrap();
    assert!(status.success(), "graceful exit on SIGTERM: {status:?}");
}
