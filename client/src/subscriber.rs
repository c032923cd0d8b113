//! distlog's own `tracing` [`Subscriber`]: span ids, handles, the stack of
//! entered spans and the records, without a `tracing_subscriber::Registry`.
//!
//! The `Registry` keeps every span in a slab of its own (reference counts,
//! a lock per span's extensions, a per-thread stack of ids) which the
//! layer did not use: it kept its data in its own table, keyed by the
//! `Registry`'s id, and its own stack. Here the slab is ours
//! ([`crate::span_slab`]): the span id names the slot of the span's data,
//! and the thread's scope stack is the stack of entered spans.

use std::sync::atomic::{AtomicU32, Ordering};

use tracing_core::span::{Attributes, Current, Id, Record};
use tracing_core::{Event, Interest, Metadata};

use crate::layer::{self, NewScope, Spans};
use crate::scope::{self, ScopeData};
use crate::span_slab::SpanSlab;

/// What the subscriber keeps of an open span.
struct Span {
    meta: &'static Metadata<'static>,
    /// `None` when the span has no scope (no runtime, or the call-site
    /// table was full): it records nothing, but is entered and closed.
    data: Option<ScopeData>,
}

/// distlog as a whole `tracing` subscriber: what [`crate::init`] installs
/// (under the filter, a `tracing_subscriber` layer).
///
/// Spans, events and the per-thread stack of entered spans are distlog's
/// own; a stack with other layers (a fmt layer next to ours) uses
/// [`crate::DistlogLayer`] on a `tracing_subscriber::Registry` instead
/// ([`crate::Builder::layer`]).
///
/// # Examples
///
/// ```no_run
/// use tracing_subscriber::layer::SubscriberExt;
/// let sub = distlog::builder("checkout").subscriber().expect("distlog runtime");
/// let sub = sub.with(tracing_subscriber::EnvFilter::new("info"));
/// tracing::subscriber::set_global_default(sub).expect("no other subscriber");
/// ```
pub struct Subscriber {
    spans: SpanSlab<Span>,
    /// Tells this subscriber's entries on the thread's scope stack from
    /// another's (never 0).
    owner: u32,
}

impl std::fmt::Debug for Subscriber {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Subscriber")
            .field("owner", &self.owner)
            .finish_non_exhaustive()
    }
}

impl Default for Subscriber {
    fn default() -> Self {
        Self::new()
    }
}

impl Subscriber {
    pub(crate) fn new() -> Self {
        static OWNERS: AtomicU32 = AtomicU32::new(1);
        // Relaxed: only uniqueness matters. 0 is skipped on wrap-around.
        let mut owner = OWNERS.fetch_add(1, Ordering::Relaxed);
        if owner == 0 {
            owner = OWNERS.fetch_add(1, Ordering::Relaxed);
        }
        Subscriber {
            spans: SpanSlab::new(),
            owner,
        }
    }

    /// `f` on the scope data of span `id`, if it is open and has one.
    #[inline]
    pub(crate) fn with_data<R>(&self, id: &Id, f: impl FnOnce(&ScopeData) -> R) -> Option<R> {
        self.spans
            .with(id.into_u64(), |s| s.data.as_ref().map(f))
            .flatten()
    }
}

impl Spans for Subscriber {
    #[inline(always)]
    fn with<R>(&self, id: &Id, f: impl FnOnce(&ScopeData) -> R) -> Option<R> {
        self.with_data(id, f)
    }
}

impl tracing_core::Subscriber for Subscriber {
    fn register_callsite(&self, meta: &'static Metadata<'static>) -> Interest {
        layer::register(meta)
    }

    /// The filter in front decides; this records what reaches it.
    fn enabled(&self, _meta: &Metadata<'_>) -> bool {
        true
    }

    fn new_span(&self, attrs: &Attributes<'_>) -> Id {
        let new = NewScope::of(attrs, |pid| self.with_data(pid, layer::as_parent));
        let meta = attrs.metadata();
        let id = self.spans.insert_with(
            || Span {
                meta,
                data: new.as_ref().map(NewScope::make),
            },
            |s| {
                if let Some(d) = &mut s.data {
                    NewScope::fill(d, attrs);
                }
            },
        );
        Id::from_u64(id)
    }

    fn record(&self, id: &Id, values: &Record<'_>) {
        layer::record(self, id, values);
    }

    /// Nothing to record: a scope has one parent.
    fn record_follows_from(&self, _span: &Id, _follows: &Id) {}

    #[inline]
    fn event(&self, event: &Event<'_>) {
        layer::event(self, event);
    }

    #[inline]
    fn enter(&self, id: &Id) {
        let key = id.into_u64();
        let Some(c) = self
            .spans
            .with(key, |s| s.data.as_ref().map(|d| layer::entered(d, key)))
        else {
            // Not open (the `Registry` would panic): not entered.
            return;
        };
        let mut c = c.unwrap_or_else(|| {
            // No scope: the enclosing one stays current (see `scope::top`).
            scope::current().unwrap_or(scope::Current {
                key,
                scope: 0,
                trace: [0; 16],
                boost: 0,
                owner: 0,
            })
        });
        c.key = key;
        c.owner = self.owner;
        scope::push(c);
    }

    #[inline]
    fn exit(&self, id: &Id) {
        scope::pop_owned(id.into_u64(), self.owner);
    }

    fn clone_span(&self, id: &Id) -> Id {
        // A closed id stays what it is (the `Registry` would panic).
        let _ = self.spans.clone_ref(id.into_u64());
        id.clone()
    }

    #[inline]
    fn try_close(&self, id: Id) -> bool {
        self.spans.release(id.into_u64(), |s| {
            if let Some(d) = &s.data {
                layer::close_record(d);
            }
        })
    }

    fn drop_span(&self, id: Id) {
        let _ = self.try_close(id);
    }

    fn current_span(&self) -> Current {
        let found = scope::top_key(self.owner)
            .and_then(|key| self.spans.with(key, |s| (Id::from_u64(key), s.meta)));
        match found {
            Some((id, meta)) => Current::new(id, meta),
            None => Current::none(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tracing::Span;

    /// The `Registry`'s duties without a runtime too (no scope data: the
    /// spans are kept, entered and closed, and record nothing), and ids
    /// that name no open span refused without a panic.
    #[test]
    fn spans_are_current_closed_once_and_stale_ids_refused() {
        let dispatch = tracing::Dispatch::new(Subscriber::new());
        tracing::dispatcher::with_default(&dispatch, || {
            let a = tracing::info_span!("a");
            let b = tracing::info_span!(parent: &a, "b");
            assert!(Span::current().is_none());
            a.in_scope(|| {
                assert_eq!(Span::current().id(), a.id());
                b.in_scope(|| {
                    assert_eq!(Span::current().metadata().map(|m| m.name()), Some("b"));
                    // Another distlog subscriber on this thread: none of
                    // these spans are its own.
                    // Its first span has the id of our first (`a`): its exit
                    // takes its own entry off the stack, not ours.
                    let other = tracing::Dispatch::new(Subscriber::new());
                    tracing::dispatcher::with_default(&other, || {
                        assert!(Span::current().is_none());
                        let o = tracing::info_span!("o");
                        assert_eq!(o.id(), a.id());
                        o.in_scope(|| {
                            assert_eq!(Span::current().metadata().map(|m| m.name()), Some("o"))
                        });
                        assert!(Span::current().is_none());
                        // An exit of an id it never entered leaves our
                        // entry of that id alone (checked below).
                        other.exit(&o.id().expect("enabled"));
                    });
                });
                assert_eq!(Span::current().id(), a.id());
            });
            let id = a.id().expect("enabled");
            let kept = a.clone();
            drop(a);
            // A handle left: still open.
            assert!(dispatch.clone_span(&id) == id);
            assert!(!dispatch.try_close(id.clone()));
            drop(kept);
            // Closed now: every entry point takes the stale id quietly.
            assert!(!dispatch.try_close(id.clone()));
            dispatch.enter(&id);
            assert!(Span::current().is_none());
            dispatch.exit(&id);
            let _ = dispatch.clone_span(&id);
            for made_up in [1, u64::MAX, 1 << 40 | 3] {
                let id = Id::from_u64(made_up);
                dispatch.enter(&id);
                dispatch.exit(&id);
                assert!(!dispatch.try_close(id));
            }
            // The slot comes back under another id.
            let c = tracing::info_span!("c");
            assert_ne!(c.id(), Some(id));
        });
    }
}
