//! A console's WebSocket as the tests read it: the bytes a terminal would show, until a text
//! appears or the console closes.

use futures_util::StreamExt;
use std::time::Duration;
use tokio_tungstenite::tungstenite::Message;

/// A console WebSocket to the panel.
pub type Ws = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// How a read ended without its text: the console closed (with the close frame's reason, empty
/// when there was none) after showing `seen`.
#[derive(Debug)]
pub struct Closed {
    pub reason: String,
    pub seen: String,
}

/// Reads until the output holds `needle` and returns all of it; `Err` if the console closes
/// first. Panics if neither happens within `secs`.
pub async fn read_until(ws: &mut Ws, needle: &str, secs: u64) -> Result<String, Closed> {
    let mut seen = String::new();
    let r = tokio::time::timeout(Duration::from_secs(secs), async {
        while let Some(m) = ws.next().await {
            match m.unwrap() {
                Message::Binary(b) => {
                    seen.push_str(&String::from_utf8_lossy(&b));
                    if seen.contains(needle) {
                        return Ok(());
                    }
                }
                Message::Close(f) => return Err(f.map(|f| f.reason.to_string()).unwrap_or_default()),
                _ => {}
            }
        }
        Err("ended without a close frame".to_string())
    })
    .await;
    match r {
        Ok(Ok(())) => Ok(seen),
        Ok(Err(reason)) => Err(Closed { reason, seen }),
        Err(_) => panic!("no {needle:?} and no close within {secs} s; saw {seen:?}"),
    }
}

/// [`read_until`] for a console that must stay open: panics if it closes, or if `needle` does
/// not come within 20 s.
pub async fn expect(ws: &mut Ws, needle: &str) -> String {
    read_until(ws, needle, 20).await.unwrap_or_else(|c| panic!("closed ({:?}) before {needle:?}; saw {:?}", c.reason, c.seen))
}
