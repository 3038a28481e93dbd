//! The Rust client: follow rooms on a chat server and post to them, surviving disconnects.
//!
//! ```sh
//! cargo run -p chat-server &                       # a server on 127.0.0.1:8000
//! cargo run -p chat-client --example client -- lobby "hello from Rust"
//! ```

use chat_client::{Auth, ChatClient, ClientConfig, Event};
use chat_core::RoomName;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let room: RoomName = args.next().unwrap_or_else(|| "lobby".into()).parse()?;
    let text = args
        .next()
        .unwrap_or_else(|| "hello from the Rust client".into());
    let url = std::env::var("CHAT_URL").unwrap_or_else(|_| "ws://127.0.0.1:8000/ws".into());
    // A service would use Auth::Bearer(token) from `chat-server token issue`.
    let mut client =
        ChatClient::connect(ClientConfig::new(url, Auth::Guest("rust-bot".into()))).await?;
    // Everything from the start of the room, then live messages.
    client.join(&room, Some(0)).await?;
    let seq = client.send(&room, text).await?;
    println!("stored as #{seq}; following {room} (Ctrl-C to stop)");
    while let Some(event) = client.next_event().await {
        match event {
            Event::Message(m) => println!("#{} {}: {}", m.seq, m.sender.name, m.body),
            Event::Disconnected => println!("(disconnected; reconnecting)"),
            Event::Reconnected => println!("(back; nothing was missed)"),
            Event::Other(_) => {}
        }
    }
    Ok(())
}
