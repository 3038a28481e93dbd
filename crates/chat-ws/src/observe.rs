//! What every connection records through the `metrics` facade (the names and their meaning
//! are in [`chat_core::metrics`]): how many are open, and how they ended.

use chat_core::metrics::{self as m, GaugeGuard};

/// One open connection of `kind` while the guard lives.
pub(crate) fn connection(kind: &'static str) -> GaugeGuard {
    GaugeGuard::new(metrics::gauge!(m::CONNECTIONS, "kind" => kind))
}

/// Counts a connection that ended, by close code and by who closed it.
pub(crate) fn closed(code: Option<u16>, by_server: bool) {
    let by = if by_server { "server" } else { "client" };
    metrics::counter!(m::CLOSES, "code" => m::close_code_label(code), "by" => by).increment(1);
}
