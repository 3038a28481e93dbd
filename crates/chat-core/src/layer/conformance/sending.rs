//! The conformance checks about sending in batches.

use std::future::Future;

use super::{assert_empty, busy_and_idle_members, group, msg, n_of, recv};
use crate::layer::{ChannelLayer, LayerConfig};

/// `group_send_many` gives every member the messages in order, as one `group_send` each
/// would; a member with room for only some gets those, then a missed marker, then messages
/// again once it has room.
pub async fn group_send_many_keeps_order_and_skips_what_does_not_fit<L, F, Fut>(make: F)
where
    L: ChannelLayer,
    F: Fn(LayerConfig) -> Fut,
    Fut: Future<Output = L>,
{
    let layer = make(LayerConfig {
        capacity: 3,
        ..LayerConfig::default()
    })
    .await;
    let g = group("room.batch");
    let (tight, roomy) = busy_and_idle_members(&layer, &g).await;
    layer
        .group_send_many(&g, (1..=3).map(msg).collect())
        .await
        .expect("group_send_many succeeds even when a member is full");
    for n in 1..=3 {
        assert_eq!(n_of(&recv(&layer, &roomy).await), n, "in order");
    }
    assert_eq!(n_of(&recv(&layer, &tight).await), 0);
    assert_eq!(n_of(&recv(&layer, &tight).await), 1);
    assert_eq!(n_of(&recv(&layer, &tight).await), 2);
    assert!(
        recv(&layer, &tight).await.is_missed(),
        "told where the message that did not fit would have been"
    );
    assert_empty(&layer, &tight, "message 3 did not fit").await;
    layer
        .group_send_many(&g, Vec::new())
        .await
        .expect("an empty batch is fine");
    layer
        .group_send_many(&g, vec![msg(4)])
        .await
        .expect("group_send_many");
    assert_eq!(n_of(&recv(&layer, &tight).await), 4, "room again");
    assert_eq!(n_of(&recv(&layer, &roomy).await), 4);
    assert_empty(&layer, &roomy, "each message once").await;
}
