//! # chat-core
//!
//! The foundation of the chat framework, with nothing of ours underneath it:
//!
//! - validated names: [`RoomName`] (public rooms and `dm_3_8` pair rooms), [`GroupName`],
//!   [`ChannelName`]; [`PairRoom`] for the private room of two users;
//! - the wire protocol's typed frames ([`ClientFrame`], [`ServerFrame`]), error and close
//!   codes, and default [`Limits`];
//! - the [`ChannelLayer`] trait (Channels' `send` / `group_add` / `group_send`) with the
//!   [`InMemoryChannelLayer`] and a [`conformance`](layer::conformance) suite any layer can run;
//! - the [`MessageStore`] trait through which consumers persist messages, with an in-memory
//!   [`MemoryStore`] for tests.
//!
//! ```
//! use chat_core::{ChannelLayer, GroupName, InMemoryChannelLayer, LayerMessage, PairRoom};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! // Pair rooms are the same whoever opens them.
//! assert_eq!(PairRoom::new(8, 3)?.name().as_str(), "dm_3_8");
//!
//! // The Channels model: a group of channels, one send reaches them all.
//! let layer = InMemoryChannelLayer::default();
//! let room: GroupName = "room.lobby".parse()?;
//! let alice = layer.new_channel().await?;
//! let bob = layer.new_channel().await?;
//! layer.group_add(&room, &alice).await?;
//! layer.group_add(&room, &bob).await?;
//! layer
//!     .group_send(&room, LayerMessage::new("chat.message", serde_json::json!({"message": "oi"})))
//!     .await?;
//! let got = layer.receive(&bob).await?;
//! assert_eq!(got.kind(), "chat.message");
//! assert_eq!(got.payload_str(), r#"{"message":"oi"}"#);
//! # Ok(())
//! # }
//! ```

pub mod layer;
pub mod message;
pub mod metrics;
pub mod names;
pub mod pair;
pub mod policy;
pub mod presence;
pub mod protocol;
pub mod rate;
pub mod store;

pub use layer::{
    Bursts, ChannelLayer, InMemoryChannelLayer, LayerConfig, LayerError, LayerMessage, SharedLayer,
};
#[cfg(feature = "redis")]
pub use layer::{RedisChannelLayer, RedisError, RedisLayerConfig};
pub use message::{AttachmentInfo, GuestId, NewMessage, Sender, Seq, StoredMessage, Timestamp};
pub use names::{ChannelName, GroupName, InvalidName, RoomKind, RoomName};
pub use pair::{PairError, PairRoom, UserId};
pub use policy::{AnyPair, InvalidPolicy, Member, PairPolicy, RolePairs, parse_pair_policy};
#[cfg(feature = "redis")]
pub use presence::RedisPresence;
pub use presence::{MemoryPresence, OnlineUsers, Presence, PresenceError, SharedPresence};
pub use protocol::{
    ClientFrame, ErrorCode, FrameError, InvalidDisplayName, Limits, PresenceEvent, ReadMark,
    ServerFrame, close,
};
pub use rate::TokenBucket;
pub use store::{
    Appended, Committed, HistoryPage, HistoryQuery, MemoryStore, MessageStore, StoreError,
};
