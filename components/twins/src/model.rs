//! The stored records. Times are milliseconds; the API's float seconds are
//! made when answering (see `clock::ts`).

use indexmap::IndexMap;
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};

use crate::clock::ts;

#[derive(Serialize, Deserialize, Clone)]
pub struct Account {
    pub uuid: String,
    pub name: String,
    pub created: i64,
    pub updated: i64,
}

/// The spelling a role's rules were written in; answered back the same way.
#[derive(Serialize, Deserialize, Clone, Copy, PartialEq, Eq, Default)]
pub enum RuleKeys {
    /// `twin_rule`, `entry_rule`, `identity_rule` (client 3.18 examples).
    #[default]
    Suffixed,
    /// `twin`, `entry`, `identity` (current docs).
    Short,
}

#[derive(Serialize, Deserialize, Clone)]
pub struct Statement {
    pub effect: Effect,
    pub actions: Option<Vec<String>>,
}

#[derive(Serialize, Deserialize, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Effect {
    Allow,
    Deny,
}

impl Statement {
    /// Whether the statement lets its holder perform `action`.
    pub fn allows(&self, action: &str) -> bool {
        let listed = self.actions.as_ref().is_some_and(|a| a.iter().any(|x| x == action));
        match (self.effect, &self.actions) {
            (Effect::Allow, _) => listed,
            (Effect::Deny, None) => true,
            (Effect::Deny, Some(_)) => !listed,
        }
    }
}

#[derive(Serialize, Deserialize, Clone)]
pub struct Role {
    pub uuid: String,
    pub account: String,
    pub name: String,
    pub statement: Statement,
    pub twin_rule: Option<String>,
    pub entry_rule: Option<String>,
    pub identity_rule: Option<String>,
    #[serde(default)]
    pub keys: RuleKeys,
    pub created: i64,
    pub updated: i64,
}

impl Role {
    pub fn to_json(&self) -> Value {
        let (t, e, i) = match self.keys {
            RuleKeys::Suffixed => ("twin_rule", "entry_rule", "identity_rule"),
            RuleKeys::Short => ("twin", "entry", "identity"),
        };
        let mut rules = Map::new();
        rules.insert(t.into(), json!(self.twin_rule));
        rules.insert(e.into(), json!(self.entry_rule));
        rules.insert(i.into(), json!(self.identity_rule));
        json!({
            "uuid": self.uuid,
            "name": self.name,
            "account": self.account,
            "statement": self.statement,
            "rules": rules,
            "created_ts": ts(self.created),
            "updated_ts": ts(self.updated),
        })
    }
}

#[derive(Serialize, Deserialize, Clone)]
pub struct User {
    pub uuid: String,
    pub account: String,
    pub role: String,
    pub name: String,
    pub description: Option<Map<String, Value>>,
    pub activity: Option<Value>,
    pub created: i64,
    pub updated: i64,
}

impl User {
    pub fn to_json(&self) -> Value {
        let mut o = json!({
            "uuid": self.uuid,
            "role": self.role,
            "account": self.account,
            "name": self.name,
            "activity": self.activity,
            "created_ts": ts(self.created),
            "updated_ts": ts(self.updated),
        });
        if let Some(d) = &self.description {
            o["description"] = Value::Object(d.clone());
        }
        o
    }
}

/// What the store knows of a User Secret: never the secret itself.
#[derive(Serialize, Deserialize, Clone)]
pub struct SecretRecord {
    pub account: String,
    pub user: String,
    pub hash: String,
    pub fingerprint: String,
    pub validity: Option<i64>,
    pub created: i64,
    pub updated: i64,
}

impl SecretRecord {
    pub fn to_json(&self) -> Value {
        json!({
            "account": self.account,
            "user": self.user,
            "validity_ts": self.validity.map(ts),
            "created_ts": ts(self.created),
            "updated_ts": ts(self.updated),
            "fingerprint": self.fingerprint,
        })
    }
}

#[derive(Serialize, Deserialize)]
pub struct Pin {
    pub user: String,
    /// Validity of the secret the PIN will make.
    pub validity: Option<i64>,
    pub expires: i64,
}

#[derive(Serialize, Deserialize, Clone)]
pub struct Twin {
    pub uuid: String,
    pub owner: String,
    pub creator: String,
    pub description: Option<Map<String, Value>>,
    pub created: i64,
    pub updated: i64,
    pub terminated: Option<Termination>,
}

#[derive(Serialize, Deserialize, Clone)]
pub struct Termination {
    pub issuer: String,
    pub at: i64,
}

impl Twin {
    pub fn status(&self) -> &'static str {
        if self.terminated.is_some() {
            "terminated"
        } else {
            "alive"
        }
    }

    pub fn to_json(&self) -> Value {
        let mut o = json!({
            "status": self.status(),
            "owner": self.owner,
            "updated_ts": ts(self.updated),
            "creation_certificate": {
                "uuid": self.uuid,
                "created_ts": ts(self.created),
                "creator": self.creator,
            },
        });
        if let Some(d) = &self.description {
            o["description"] = Value::Object(d.clone());
        }
        if let Some(t) = &self.terminated {
            o["termination_certificate"] = json!({"issuer": t.issuer, "terminated_ts": ts(t.at)});
        }
        o
    }
}

/// What an entry holds: its own value, or where to read one.
#[derive(Serialize, Deserialize, Clone, PartialEq)]
// Externally tagged (`{"value": {...}}`): decoding an internally tagged
// enum buffers every entry's content first, on the hottest read path.
#[serde(rename_all = "lowercase")]
pub enum EntryKind {
    Value { value: Value },
    Reference { source: String },
    Include { source: String },
}

#[derive(Serialize, Deserialize, Clone)]
pub struct Entry {
    pub kind: EntryKind,
    pub visibility: Option<String>,
    pub history: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeseries: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub publish: Option<Value>,
    pub created: i64,
    pub updated: i64,
    pub changed: i64,
    /// Sequence number of the next history item.
    #[serde(default)]
    pub hnext: u64,
    /// Lowest history sequence number that may still be stored.
    #[serde(default)]
    pub hlow: u64,
    /// Time of the newest history value: each later one is stamped at least
    /// a millisecond after it, so history times (the keys of a history
    /// answer) are distinct and ordered.
    #[serde(default)]
    pub hlast: i64,
}

impl Entry {
    /// A new value entry, created (and its value changed) at `now`.
    pub fn value(value: Value, visibility: Option<String>, history: Option<String>, now: i64) -> Entry {
        Entry {
            kind: EntryKind::Value { value },
            visibility,
            history,
            timeseries: None,
            publish: None,
            created: now,
            updated: now,
            changed: now,
            hnext: 0,
            hlow: 0,
            hlast: 0,
        }
    }

    pub fn own_value(&self) -> Option<&Value> {
        match &self.kind {
            EntryKind::Value { value } => Some(value),
            _ => None,
        }
    }
}

/// One account's ledger on one twin.
#[derive(Serialize, Deserialize, Default, Clone)]
pub struct Ledger {
    pub entries: IndexMap<String, Entry>,
}

#[derive(Serialize, Deserialize, Clone)]
pub struct Identity {
    pub name: String,
    pub twin: String,
    pub account: String,
    pub visibility: Option<String>,
    pub validity: Option<i64>,
    pub created: i64,
    pub updated: i64,
}

impl Identity {
    pub fn expired(&self, now: i64) -> bool {
        self.validity.is_some_and(|v| v <= now)
    }

    pub fn to_json(&self) -> Value {
        json!({
            "validity_ts": self.validity.map(ts),
            "visibility": self.visibility,
            "updated_ts": ts(self.updated),
            "creation_certificate": {
                "created_ts": ts(self.created),
                "creator": self.account,
                "identity": self.name,
            },
        })
    }

    pub fn list_json(&self) -> Value {
        json!({
            "visibility": self.visibility,
            "validity_ts": self.validity.map(ts),
            "created_ts": ts(self.created),
            "updated_ts": ts(self.updated),
        })
    }
}

/// A pointer from an identity name or a twin to where identities live.
#[derive(Serialize, Deserialize, Clone, PartialEq)]
pub struct IdentityRef {
    pub twin: String,
    pub account: String,
    pub name: String,
}
