//! What keeps one message from turning into endlessly many.
//!
//! Three ways a broker can feed itself: answering a message that is its own
//! answer (a reply published on an inbox topic comes straight back),
//! answering an error with an error (two brokers, or a broker and a
//! misbehaving peer, ping-pong for ever), and routing a message around a
//! cycle of endpoints (an AAS whose endpoint is a relay back to this broker,
//! or an AAS registered under an inbox's own name). The first two are
//! refused outright; the third is cut by a hop count that the broker stamps
//! on every message it forwards (`frame.twinlatticeHops`), so a relay that
//! passes messages on unchanged carries the count back in.
//!
//! Pure decisions over parsed JSON; no I/O.

use serde_json::Value;

/// Ids the broker answers to: the RIC's inbox id and its own id.
pub const BROKER_IDS: [&str; 2] = ["AASpillarbox", "VWS_RIC"];

/// The frame field carrying how often the message passed this broker.
pub const HOPS_FIELD: &str = "twinlatticeHops";

/// Passes through this broker a message may make; the next one is refused.
/// Ordinary traffic makes one (sender → broker → receiver).
pub const MAX_HOPS: u64 = 8;

/// Message types that are themselves answers: never answered with an error,
/// so two parties can never trade errors for ever.
const ANSWERS: [&str; 3] = ["error", "registerack", "HeartBeatAck"];

pub fn is_broker(id: &str) -> bool {
    BROKER_IDS.contains(&id)
}

/// What to do with an incoming message, before anything else.
#[derive(Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Handle it; it has passed this broker `hops` times before.
    Handle { hops: u64 },
    /// Drop it without an answer: it claims to come from the broker itself,
    /// so it is the broker's own answer coming back, or a forgery of it.
    FromMyself,
    /// Refuse it: it went round a cycle of relays.
    TooManyHops { hops: u64 },
}

pub fn judge(message: &Value, sender_id: &str) -> Verdict {
    if is_broker(sender_id) {
        return Verdict::FromMyself;
    }
    let hops = hops_of(message);
    if hops >= MAX_HOPS {
        Verdict::TooManyHops { hops }
    } else {
        Verdict::Handle { hops }
    }
}

/// The hop count a message carries (0 when none, or not a number).
pub fn hops_of(message: &Value) -> u64 {
    message.get("frame").and_then(|f| f.get(HOPS_FIELD)).and_then(Value::as_u64).unwrap_or(0)
}

/// Whether a message of `message_type` may be answered with an error.
pub fn may_answer_with_error(message_type: &str) -> bool {
    !ANSWERS.iter().any(|a| a.eq_ignore_ascii_case(message_type))
}

/// `message` as it is forwarded: unchanged but for the hop count, one more
/// than it arrived with.
pub fn forwarded(mut message: Value, hops: u64) -> String {
    if let Some(frame) = message.get_mut("frame").and_then(Value::as_object_mut) {
        frame.insert(HOPS_FIELD.into(), Value::from(hops + 1));
    }
    message.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn message(sender: &str, hops: Option<u64>) -> Value {
        let mut m = json!({"frame": {"type": "x", "messageId": "1", "sender": {"identification": {"id": sender}}}});
        if let Some(h) = hops {
            m["frame"][HOPS_FIELD] = json!(h);
        }
        m
    }

    #[test]
    fn a_message_from_the_broker_itself_is_dropped() {
        assert_eq!(judge(&message("VWS_RIC", None), "VWS_RIC"), Verdict::FromMyself);
        assert_eq!(judge(&message("AASpillarbox", None), "AASpillarbox"), Verdict::FromMyself);
        assert_eq!(judge(&message("urn:a", None), "urn:a"), Verdict::Handle { hops: 0 });
    }

    #[test]
    fn hops_are_counted_and_cut_at_the_limit() {
        let mut m = message("urn:a", None);
        for pass in 0..MAX_HOPS {
            assert_eq!(judge(&m, "urn:a"), Verdict::Handle { hops: pass });
            m = serde_json::from_str(&forwarded(m, pass)).expect("forwarded is JSON");
        }
        assert_eq!(judge(&m, "urn:a"), Verdict::TooManyHops { hops: MAX_HOPS });
    }

    #[test]
    fn a_bad_hop_count_counts_as_none_and_a_huge_one_is_refused() {
        let mut m = message("urn:a", None);
        m["frame"][HOPS_FIELD] = json!("many");
        assert_eq!(judge(&m, "urn:a"), Verdict::Handle { hops: 0 });
        assert_eq!(judge(&message("urn:a", Some(u64::MAX)), "urn:a"), Verdict::TooManyHops { hops: u64::MAX });
    }

    #[test]
    fn forwarding_changes_nothing_but_the_count() {
        let m = json!({"frame": {"type": "x", "messageId": "1", "sender": {"id": "a"}}, "interactionElements": [1, {"b": 2}]});
        let mut out: Value = serde_json::from_str(&forwarded(m.clone(), 0)).expect("JSON");
        assert_eq!(out["frame"][HOPS_FIELD], json!(1));
        out["frame"].as_object_mut().expect("frame").remove(HOPS_FIELD);
        assert_eq!(out, m);
    }

    #[test]
    fn answers_are_never_answered_with_errors() {
        for t in ["error", "Error", "registerack", "HeartBeatAck"] {
            assert!(!may_answer_with_error(t), "{t}");
        }
        for t in ["ping", "register", "HeartBeat", "callForProposal"] {
            assert!(may_answer_with_error(t), "{t}");
        }
    }
}
