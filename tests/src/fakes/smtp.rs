//! A local SMTP server that takes every mail (RFC 5321: greeting, EHLO,
//! MAIL, RCPT, DATA with dot-unstuffing, RSET, NOOP, QUIT) and hands what
//! it received to the test, parsed.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::json;

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;
use tokio::sync::{Mutex, mpsc};

/// One mail as the sink took it.
#[derive(Debug, Clone)]
pub struct ReceivedMail {
    pub envelope_from: String,
    pub envelope_to: Vec<String>,
    pub subject: String,
    pub text: String,
    pub html: String,
    pub raw: Vec<u8>,
}

impl ReceivedMail {
    /// The first link in the text part that contains `path`.
    pub fn link(&self, path: &str) -> String {
        self.text
            .split_whitespace()
            .find(|w| w.starts_with("http") && w.contains(path))
            .unwrap_or_else(|| panic!("no {path} link in:\n{}", self.text))
            .to_owned()
    }

    /// The `token` query value of that link.
    pub fn token(&self, path: &str) -> String {
        let link = self.link(path);
        let url = reqwest::Url::parse(&link).expect("a URL");
        url.query_pairs()
            .find(|(k, _)| k == "token")
            .map(|(_, v)| v.into_owned())
            .expect("a token in the link")
    }
}

pub struct SmtpSink {
    pub url: String,
    received: Mutex<mpsc::UnboundedReceiver<ReceivedMail>>,
}

impl SmtpSink {
    pub async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("smtp://{}", listener.local_addr().unwrap());
        let (tx, rx) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            while let Ok((socket, _)) = listener.accept().await {
                let tx = tx.clone();
                tokio::spawn(async move {
                    let _ = session(socket, tx).await;
                });
            }
        });
        Self {
            url,
            received: Mutex::new(rx),
        }
    }

    /// The next mail; fails the test when none comes within 20 s.
    pub async fn next(&self) -> ReceivedMail {
        let mut rx = self.received.lock().await;
        tokio::time::timeout(Duration::from_secs(20), rx.recv())
            .await
            .expect("a mail within 20 s")
            .expect("the sink is running")
    }

    /// Resets `email`'s password through the mailed link, as its owner
    /// would; fails the test unless the new password is taken.
    pub async fn reset_password(&self, srv: &crate::TestServer, email: &str, new_password: &str) {
        let asked = json!({ "email": email });
        let (s, body) = srv.post("/auth/password-reset", None, asked).await;
        assert_eq!(s, StatusCode::OK, "{body}");
        let token = self.next().await.token("/reset-password");
        let confirm = json!({ "token": token, "new_password": new_password });
        let (s, body) = srv
            .post("/auth/password-reset/confirm", None, confirm)
            .await;
        assert_eq!(s, StatusCode::OK, "{body}");
    }
}

async fn session(
    socket: tokio::net::TcpStream,
    tx: mpsc::UnboundedSender<ReceivedMail>,
) -> std::io::Result<()> {
    let (r, mut w) = socket.into_split();
    let mut r = BufReader::new(r);
    w.write_all(b"220 sink.test ESMTP ready\r\n").await?;
    let (mut from, mut to) = (String::new(), Vec::new());
    let mut line = String::new();
    loop {
        line.clear();
        if r.read_line(&mut line).await? == 0 {
            return Ok(());
        }
        let cmd = line.trim_end().to_owned();
        let upper = cmd.to_ascii_uppercase();
        let reply: &[u8] = if upper.starts_with("EHLO") {
            b"250-sink.test\r\n250-8BITMIME\r\n250 SMTPUTF8\r\n"
        } else if upper.starts_with("HELO") || upper.starts_with("NOOP") {
            b"250 OK\r\n"
        } else if upper.starts_with("MAIL FROM:") {
            from = address(&cmd[10..]);
            to.clear();
            b"250 OK\r\n"
        } else if upper.starts_with("RCPT TO:") {
            to.push(address(&cmd[8..]));
            b"250 OK\r\n"
        } else if upper == "DATA" {
            w.write_all(b"354 end with <CRLF>.<CRLF>\r\n").await?;
            let mut raw = Vec::new();
            loop {
                let mut l = Vec::new();
                if r.read_until(b'\n', &mut l).await? == 0 {
                    return Ok(());
                }
                if l == b".\r\n" || l == b".\n" {
                    break;
                }
                // Dot-unstuffing (RFC 5321 4.5.2).
                let l = if l.starts_with(b"..") {
                    &l[1..]
                } else {
                    &l[..]
                };
                raw.extend_from_slice(l);
            }
            let _ = tx.send(parse(from.clone(), to.clone(), raw));
            b"250 OK queued\r\n"
        } else if upper.starts_with("RSET") {
            from.clear();
            to.clear();
            b"250 OK\r\n"
        } else if upper.starts_with("QUIT") {
            w.write_all(b"221 bye\r\n").await?;
            return Ok(());
        } else {
            b"502 command not implemented\r\n"
        };
        w.write_all(reply).await?;
    }
}

fn address(arg: &str) -> String {
    let arg = arg.trim();
    let inner = arg
        .strip_prefix('<')
        .and_then(|a| a.split_once('>'))
        .map_or(arg, |(a, _)| a);
    inner.to_owned()
}

fn parse(envelope_from: String, envelope_to: Vec<String>, raw: Vec<u8>) -> ReceivedMail {
    let msg = mail_parser::MessageParser::default()
        .parse(&raw)
        .expect("a parseable message");
    ReceivedMail {
        envelope_from,
        envelope_to,
        subject: msg.subject().unwrap_or_default().to_owned(),
        text: msg.body_text(0).map(|t| t.into_owned()).unwrap_or_default(),
        html: msg.body_html(0).map(|t| t.into_owned()).unwrap_or_default(),
        raw,
    }
}
