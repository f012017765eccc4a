//! What the decky integration tests share: a stand-in collector.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncBufReadExt, AsyncReadExt, BufReader};
use tokio::net::TcpListener;

/// A collector on loopback keeping every line a decky's sink ships
/// (octet-counted `<len> <line>` frames, as the real collector reads them).
pub async fn collector() -> (SocketAddr, Arc<Mutex<Vec<String>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let lines = Arc::new(Mutex::new(Vec::new()));
    let kept = lines.clone();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let kept = kept.clone();
            tokio::spawn(async move {
                let mut reader = BufReader::new(stream);
                loop {
                    let mut len = Vec::new();
                    if reader.read_until(b' ', &mut len).await.unwrap_or(0) == 0 {
                        return;
                    }
                    let n: usize = String::from_utf8_lossy(&len).trim().parse().unwrap();
                    let mut line = vec![0u8; n];
                    if reader.read_exact(&mut line).await.is_err() {
                        return;
                    }
                    kept.lock().unwrap().push(String::from_utf8(line).unwrap());
                }
            });
        }
    });
    (addr, lines)
}
