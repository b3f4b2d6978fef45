//! A TCP proxy a test can cut: what a host sees when its PostgreSQL or
//! Redis restarts (every connection drops, new ones are refused until the
//! service is back), without restarting the machine's shared services
//! that other tests use.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

pub struct TcpProxy {
    pub addr: SocketAddr,
    down: Arc<AtomicBool>,
    /// Cancelled to drop every open connection; replaced on each cut.
    open: Arc<std::sync::Mutex<CancellationToken>>,
    stop: CancellationToken,
}

impl TcpProxy {
    /// Forwards a loopback port to `target`.
    pub async fn start(target: SocketAddr) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind proxy");
        let proxy = Self {
            addr: listener.local_addr().unwrap(),
            down: Arc::new(AtomicBool::new(false)),
            open: Arc::new(std::sync::Mutex::new(CancellationToken::new())),
            stop: CancellationToken::new(),
        };
        let (down, open, stop) = (proxy.down.clone(), proxy.open.clone(), proxy.stop.clone());
        tokio::spawn(async move {
            loop {
                let accepted = tokio::select! {
                    a = listener.accept() => a,
                    () = stop.cancelled() => return,
                };
                let Ok((client, _)) = accepted else { continue };
                if down.load(Ordering::SeqCst) {
                    drop(client);
                    continue;
                }
                let cut = open.lock().unwrap().clone();
                tokio::spawn(pipe(client, target, cut));
            }
        });
        proxy
    }

    /// The service "stops": open connections drop, new ones are refused.
    pub fn cut(&self) {
        self.down.store(true, Ordering::SeqCst);
        let mut open = self.open.lock().unwrap();
        open.cancel();
        *open = CancellationToken::new();
    }

    /// The service is back.
    pub fn restore(&self) {
        self.down.store(false, Ordering::SeqCst);
    }

    /// `url` (a `postgres://` or `redis://` URL naming the target) with
    /// this proxy's address instead.
    pub fn url_through(&self, url: &str, target: SocketAddr) -> String {
        let through = url.replacen(&target.to_string(), &self.addr.to_string(), 1);
        assert_ne!(through, url, "{url} does not name {target}");
        through
    }
}

impl Drop for TcpProxy {
    fn drop(&mut self) {
        self.stop.cancel();
        self.open.lock().unwrap().cancel();
    }
}

async fn pipe(mut client: TcpStream, target: SocketAddr, cut: CancellationToken) {
    let Ok(mut server) = TcpStream::connect(target).await else {
        return;
    };
    tokio::select! {
        _ = tokio::io::copy_bidirectional(&mut client, &mut server) => {}
        () = cut.cancelled() => {}
    }
}
