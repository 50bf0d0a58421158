//! Operator actions without an API call: account bootstrap (the self-care
//! panel's job) and the tutorial's public demo weather data.

use crate::bindings::exports::twinlattice::twins::admin::{AccountCredentials, AdminError, DemoData, Guest};
use crate::clock;
use crate::error::ApiError;
use crate::ids;
use crate::kv::{self, key, Writes};
use crate::model::{Account, Effect, Entry, EntryKind, Identity, Ledger, Role, RuleKeys, Statement, Twin, User};
use crate::routes::{history, identities, secrets, twins};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

impl From<ApiError> for AdminError {
    fn from(e: ApiError) -> Self {
        AdminError::Storage(e.internal())
    }
}

/// The demo's stations: (station id, serial, place). Generated, not
/// measured: the tutorial's Gdańsk data is not published in any package.
const STATIONS: &[(u32, &str, &str)] = &[
    (307, "sn_0000000", "Gdańsk Port"),
    (308, "sn_0000001", "Gdańsk Oliwa"),
    (309, "sn_0000002", "Gdańsk Wrzeszcz"),
    (310, "sn_0000003", "Gdańsk Śródmieście"),
    (311, "sn_0000004", "Gdańsk Osowa"),
    (312, "sn_0000005", "Gdańsk Stogi"),
];
const DEMO_HOURS: u64 = 48;
const HOUR_MS: i64 = 3_600_000;

#[derive(Serialize, Deserialize)]
struct StoredDemo {
    account: String,
    twin: String,
    identity: String,
    meters: Vec<String>,
}

/// Create an account with its Super Admin; returns (account, user, role, secret).
pub fn new_account(name: &str) -> Result<AccountCredentials, AdminError> {
    let now = clock::now_ms();
    let account = Account { uuid: ids::uuid4(), name: name.to_string(), created: now, updated: now };
    let role = Role {
        uuid: ids::uuid4(),
        account: account.uuid.clone(),
        name: "Super Admin".into(),
        statement: Statement { effect: Effect::Deny, actions: Some(Vec::new()) },
        twin_rule: Some("true".into()),
        entry_rule: Some("true".into()),
        identity_rule: Some("true".into()),
        keys: RuleKeys::Suffixed,
        created: now,
        updated: now,
    };
    let user = User {
        uuid: ids::uuid4(),
        account: account.uuid.clone(),
        role: role.uuid.clone(),
        name: "Super Admin".into(),
        description: None,
        activity: None,
        created: now,
        updated: now,
    };
    let secret = ids::new_secret();
    let record = secrets::new_secret_record(&user, &secret, None, now);
    let mut w = Writes::new();
    w.put(key::account(&account.uuid), &account)?;
    w.put(key::role(&role.uuid), &role)?;
    w.put(key::user(&user.uuid), &user)?;
    w.put(key::account_roles(&account.uuid), &vec![&role.uuid])?;
    w.put(key::account_users(&account.uuid), &vec![&user.uuid])?;
    w.put(key::secret(&record.hash), &record)?;
    w.put(key::user_secret(&user.uuid), &vec![&record.hash])?;
    w.commit()?;
    Ok(AccountCredentials { account: account.uuid, user: user.uuid, role: role.uuid, secret })
}

/// A plausible November temperature in Gdańsk for `hour` (hours since the
/// epoch) at station `i`: a daily cycle plus a small per-station offset.
fn temperature(i: usize, hour: i64) -> f64 {
    let day_phase = ((hour % 24) as f64 - 14.0) / 24.0 * std::f64::consts::TAU;
    let t = 4.5 + 2.5 * day_phase.cos() + (i as f64) * 0.3 - ((hour * 7 + i as i64 * 13) % 10) as f64 * 0.05;
    (t * 10.0).round() / 10.0
}

fn seed() -> Result<StoredDemo, AdminError> {
    let creds = new_account("Trusted Twin DEMO")?;
    let now = clock::now_ms();
    let twin = Twin {
        uuid: ids::uuid4(),
        owner: creds.account.clone(),
        creator: creds.account.clone(),
        description: json!({
            "application": "Trusted Twin DEMO App",
            "object": "weather stations",
            "city": "Gdańsk",
            "data": "generated hourly temperatures (not measured)",
        })
        .as_object()
        .cloned(),
        created: now,
        updated: now,
    terminated: None,
    };
    twins::store_new(&twin)?;
    let mut w = Writes::new();
    let mut ledger = Ledger::default();
    let meters: Vec<Value> = STATIONS.iter().map(|(id, sn, place)| json!({"id": id, "serial": sn, "place": place})).collect();
    let public = Some("true".to_string());
    ledger.entries.insert("meters".into(), Entry::value(Value::Array(meters), public.clone(), None, now));
    let this_hour = now - now.rem_euclid(HOUR_MS);
    for (i, (_, sn, _)) in STATIONS.iter().enumerate() {
        let mut e = Entry { changed: this_hour, ..Entry::value(Value::Null, public.clone(), Some("1M".into()), now) };
        let values: Vec<(i64, Value)> = (0..DEMO_HOURS)
            .map(|k| {
                let at = this_hour - (DEMO_HOURS - 1 - k) as i64 * HOUR_MS;
                (at, json!(temperature(i, at / HOUR_MS)))
            })
            .collect();
        history::seed(&mut w, &twin.uuid, &creds.account, sn, &mut e, &values)?;
        e.kind = EntryKind::Value { value: values.last().map(|(_, v)| v.clone()).unwrap_or(Value::Null) };
        ledger.entries.insert((*sn).to_string(), e);
    }
    w.put(key::ledger(&twin.uuid, &creds.account), &ledger)?;
    let identity = Identity {
        name: "DEMO#gdansk-weather".into(),
        twin: twin.uuid.clone(),
        account: creds.account.clone(),
        visibility: public,
        validity: None,
        created: now,
        updated: now,
    };
    w.release_all(identities::lock_indexes(&twin.uuid, [identity.name.as_str()])?);
    identities::attach(&mut w, std::slice::from_ref(&identity), identities::OverBound::Refuse)?;
    let demo = StoredDemo {
        account: creds.account,
        twin: twin.uuid,
        identity: identity.name,
        meters: STATIONS.iter().map(|(_, sn, _)| (*sn).to_string()).collect(),
    };
    w.put(key::demo(), &demo)?;
    w.commit()?;
    Ok(demo)
}

const BULK_MAX_TWINS: u32 = 10_000;
const BULK_MAX_ENTRIES: u32 = 64;

fn bulk(account: &str, count: u32, entries: u32) -> Result<Vec<String>, AdminError> {
    if count == 0 || count > BULK_MAX_TWINS || entries > BULK_MAX_ENTRIES {
        return Err(AdminError::Invalid(format!(
            "count must be 1 to {BULK_MAX_TWINS} and entries at most {BULK_MAX_ENTRIES}"
        )));
    }
    if kv::get::<crate::model::Account>(&key::account(account))?.is_none() {
        return Err(AdminError::Invalid(format!("no account {account}")));
    }
    let now = clock::now_ms();
    let last = kv::increment_by(&key::twin_count(account), u64::from(count))?;
    let first = last + 1 - u64::from(count);
    let mut w = Writes::new();
    let mut made = Vec::with_capacity(count as usize);
    for seq in first..=last {
        let twin = Twin {
            uuid: ids::uuid4(),
            owner: account.to_string(),
            creator: account.to_string(),
            description: json!({ "bulk": seq }).as_object().cloned(),
            created: now,
            updated: now,
            terminated: None,
        };
        let mut ledger = Ledger::default();
        for i in 0..entries {
            ledger.entries.insert(format!("e{i}"), Entry::value(json!(i), None, None, now));
        }
        w.put(key::twin(&twin.uuid), &twin)?;
        w.put(key::twin_index(account, seq), &twin.uuid)?;
        w.put(key::ledger(&twin.uuid, account), &ledger)?;
        made.push(twin.uuid);
    }
    w.commit()?;
    Ok(made)
}

impl Guest for crate::Component {
    fn bulk_twins(account: String, count: u32, entries: u32) -> Result<Vec<String>, AdminError> {
        bulk(&account, count, entries)
    }

    fn create_account(name: Option<String>) -> Result<AccountCredentials, AdminError> {
        let name = name.unwrap_or_else(|| "My Account".into());
        if name.trim().is_empty() || name.len() > 128 {
            return Err(AdminError::Invalid("the account name must be 1 to 128 characters".into()));
        }
        new_account(&name)
    }

    fn seed_demo() -> Result<DemoData, AdminError> {
        let demo = match kv::get::<StoredDemo>(&key::demo())? {
            Some(d) => d,
            None => seed()?,
        };
        Ok(DemoData { account: demo.account, twin: demo.twin, identity: demo.identity, meters: demo.meters })
    }
}
