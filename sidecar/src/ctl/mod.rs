//! The control socket: `distlogd ctl` and `distlogd tail -f` talk to the
//! running sidecar through it.
//!
//! # Who may
//!
//! The control socket sits beside the data socket
//! ([`distlog::paths::ctl_socket_for`]: `distlogd.sock` →
//! `distlogd.ctl.sock`), mode 0600, and every connection's peer uid
//! (`SO_PEERCRED`) must be the sidecar's own or root's. A refused peer is
//! told why on the socket and the refusal is logged on stderr. The data
//! socket (mode 0666, any local process may log) never accepts control
//! requests.
//!
//! # Protocol
//!
//! JSON lines. The client sends one [`Request`]; the sidecar answers one
//! [`Reply`] line. A [`Request::Subscribe`] is answered by a `Reply` and
//! then by records, one JSON line each in the record schema, as the drain
//! thread hands them to the sinks (see [`crate::subscribe`]).
//!
//! The reply to a subscription says what this sidecar guarantees
//! ([`SubscribeInfo`], in `data`; a sidecar older than it sends none):
//! clients check it rather than assume.
//!
//! # Verbosity
//!
//! Each connected client gets a control segment (see
//! [`distlog::control`]) with its effective directives (see
//! [`crate::directives`]) before its welcome; every change rewrites the
//! affected segments and nudges those clients with
//! [`distlog::proto::SidecarMsg::Directives`] on their data connection (the
//! connection's own task sends it, so nothing interleaves with its other
//! messages). Every accepted change, and every directive that expires, is
//! also a `control` record in the record stream.

pub mod command;
mod server;
mod state;

use serde::{Deserialize, Serialize};

pub use server::{serve, CtlListener};
pub use state::{Control, Peer};

use crate::directives::Scope;

/// A request on the control socket.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Request {
    /// Set a directive (replacing the one of its scope).
    LevelSet {
        /// `EnvFilter` text; one level for a trace scope.
        directives: String,
        /// Whom for.
        #[serde(flatten)]
        scope: Scope,
        /// Reverts by itself after this many milliseconds.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        ttl_ms: Option<u64>,
    },
    /// The directives and what every connected client gets.
    LevelShow,
    /// Remove a scope's directive (`everything`: all of them).
    LevelReset {
        /// Whom for.
        #[serde(flatten)]
        scope: Scope,
        /// Remove every directive instead.
        #[serde(default)]
        everything: bool,
    },
    /// Clients, counters, the sidecar itself.
    Status,
    /// Stream the records that match `filter` (see
    /// [`crate::subscribe::Filter`]).
    Subscribe {
        /// Which records (boxed: the largest request by far; the wire
        /// form is the same).
        #[serde(default)]
        filter: Box<crate::subscribe::Filter>,
    },
}

/// What a sidecar tells a subscriber about its subscription (the `data`
/// of the [`Reply`] to [`Request::Subscribe`]). Every flag is false when
/// absent: what an older sidecar's empty `data` means.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct SubscribeInfo {
    /// It filtered by `classes` (the field of
    /// [`crate::subscribe::Filter`]).
    pub classes: bool,
    /// It accepted the subscription between two batches: every stored
    /// record was published before it or committed after it (see
    /// [`crate::subscribe`]).
    pub between_batches: bool,
}

impl SubscribeInfo {
    /// What this sidecar does.
    pub const CURRENT: SubscribeInfo = SubscribeInfo {
        classes: true,
        between_batches: true,
    };

    /// As the `data` of a reply.
    pub fn to_value(self) -> serde_json::Value {
        serde_json::to_value(self).unwrap_or_default()
    }

    /// From the `data` of a reply (an older sidecar's: all false).
    pub fn from_reply(r: &Reply) -> SubscribeInfo {
        serde_json::from_value(r.data.clone()).unwrap_or_default()
    }
}

/// The answer to a [`Request`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Reply {
    /// Whether the request was carried out.
    pub ok: bool,
    /// Why not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// What was done, for people (one line).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// Remarks worth reading (e.g. no client of that service is connected).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
    /// The data asked for (`level show`, `status`).
    #[serde(default, skip_serializing_if = "serde_json::Value::is_null")]
    pub data: serde_json::Value,
}

impl Reply {
    /// A success with a message.
    pub fn done(message: impl Into<String>) -> Reply {
        Reply {
            ok: true,
            error: None,
            message: Some(message.into()),
            notes: Vec::new(),
            data: serde_json::Value::Null,
        }
    }

    /// A success carrying data.
    pub fn data(data: serde_json::Value) -> Reply {
        Reply {
            ok: true,
            error: None,
            message: None,
            notes: Vec::new(),
            data,
        }
    }

    /// A failure.
    pub fn error(error: impl Into<String>) -> Reply {
        Reply {
            ok: false,
            error: Some(error.into()),
            message: None,
            notes: Vec::new(),
            data: serde_json::Value::Null,
        }
    }

    /// The reply as one JSON line with its `\n`.
    pub fn to_line(&self) -> String {
        let mut s = serde_json::to_string(self).unwrap_or_else(|_| r#"{"ok":false}"#.into());
        s.push('\n');
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::TraceId;

    #[test]
    fn request_json() {
        let r = Request::LevelSet {
            directives: "debug".into(),
            scope: Scope::Trace {
                trace: TraceId([0xab; 16]),
            },
            ttl_ms: Some(1000),
        };
        let j = serde_json::to_string(&r).unwrap();
        assert_eq!(
            j,
            r#"{"op":"level_set","directives":"debug","scope":"trace","trace":"abababababababababababababababab","ttl_ms":1000}"#
        );
        assert_eq!(serde_json::from_str::<Request>(&j).unwrap(), r);
        let s: Request = serde_json::from_str(r#"{"op":"subscribe"}"#).unwrap();
        assert!(matches!(s, Request::Subscribe { .. }));
    }
}
