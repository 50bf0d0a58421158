//! Whether one role's rights cover another's (API.md, "Rights"): a user may
//! only hand out, change or act on roles that give no more than its own.
//!
//! Pure: the only outside knowledge, whether a rule is constant, comes in as
//! a function, so the comparison is unit-tested without the rule cache.

use crate::auth::ACTIONS;
use crate::model::Role;

/// Which of a role's three rules.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Slot {
    Twin,
    Entry,
    Identity,
}

impl Slot {
    pub fn name(self) -> &'static str {
        match self {
            Slot::Twin => "twin_rule",
            Slot::Entry => "entry_rule",
            Slot::Identity => "identity_rule",
        }
    }

    fn of(self, role: &Role) -> Option<&str> {
        match self {
            Slot::Twin => role.twin_rule.as_deref(),
            Slot::Entry => role.entry_rule.as_deref(),
            Slot::Identity => role.identity_rule.as_deref(),
        }
    }
}

const SLOTS: [Slot; 3] = [Slot::Twin, Slot::Entry, Slot::Identity];

/// What makes a role exceed another: the first action or rule found.
#[derive(Debug, PartialEq, Eq)]
pub enum Excess {
    Action(&'static str),
    Rule(Slot),
}

impl Excess {
    pub fn describe(&self) -> String {
        match self {
            Excess::Action(a) => format!("it would allow '{a}', which your own role does not"),
            Excess::Rule(s) => format!("its '{}' could reach more than your own role's", s.name()),
        }
    }
}

/// The truth of a rule that reads no variable, `None` if it reads any (or
/// does not parse): `rule::constant` in the component.
pub type Constant<'a> = &'a dyn Fn(&str) -> Option<bool>;

/// Whether a rule in `slot` lets its holder reach everything the slot can
/// give. A null twin rule is not unrestricted: it keeps foreign accounts
/// out. A null entry or identity rule adds no restriction.
fn unrestricted(slot: Slot, rule: Option<&str>, constant: Constant) -> bool {
    match (slot, rule) {
        (Slot::Twin, None) => false,
        (_, None) => true,
        (_, Some(r)) => constant(r) == Some(true),
    }
}

/// Whether rule `theirs` can reach no more than `mine` in `slot`. Rules are
/// predicates we cannot order in general, so we accept only the cases that
/// are certain: the same rule, my rule unrestricted, or theirs reaching
/// nothing (a constant false rule).
pub fn rule_within(
    slot: Slot,
    mine: Option<&str>,
    theirs: Option<&str>,
    constant: Constant,
) -> bool {
    let same = match (mine, theirs) {
        (None, None) => true,
        (Some(a), Some(b)) => a.trim() == b.trim(),
        _ => false,
    };
    same || unrestricted(slot, mine, constant) || theirs.is_some_and(|r| constant(r) == Some(false))
}

/// `Ok` when `theirs` gives no action and no rule reach beyond `mine`.
pub fn within(mine: &Role, theirs: &Role, constant: Constant) -> Result<(), Excess> {
    if let Some(a) = ACTIONS
        .iter()
        .find(|a| theirs.statement.allows(a) && !mine.statement.allows(a))
    {
        return Err(Excess::Action(a));
    }
    match SLOTS
        .iter()
        .find(|s| !rule_within(**s, s.of(mine), s.of(theirs), constant))
    {
        Some(s) => Err(Excess::Rule(*s)),
        None => Ok(()),
    }
}

/// Whether `role` gives everything: every action and unrestricted rules
/// (the Super Admin role, or one equal to it).
pub fn is_super(role: &Role, constant: Constant) -> bool {
    ACTIONS.iter().all(|a| role.statement.allows(a))
        && SLOTS.iter().all(|s| unrestricted(*s, s.of(role), constant))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Effect, RuleKeys, Statement};

    /// A stand-in for the rule engine: only literal `true`/`false` are constant.
    fn constant(r: &str) -> Option<bool> {
        match r.trim() {
            "true" => Some(true),
            "false" => Some(false),
            _ => None,
        }
    }

    fn role(effect: Effect, actions: Option<&[&str]>, rules: [Option<&str>; 3]) -> Role {
        Role {
            uuid: "r".into(),
            account: "a".into(),
            name: "n".into(),
            statement: Statement {
                effect,
                actions: actions.map(|a| a.iter().map(|s| s.to_string()).collect()),
            },
            twin_rule: rules[0].map(String::from),
            entry_rule: rules[1].map(String::from),
            identity_rule: rules[2].map(String::from),
            keys: RuleKeys::Suffixed,
            created: 0,
            updated: 0,
        }
    }

    fn admin() -> Role {
        role(
            Effect::Deny,
            Some(&[]),
            [Some("true"), Some("true"), Some("true")],
        )
    }

    #[test]
    fn the_super_admin_covers_everything_and_is_super() {
        let limited = role(
            Effect::Allow,
            Some(&["get_twin"]),
            [Some("TWIN.a == 1"), None, Some("x")],
        );
        assert_eq!(within(&admin(), &limited, &constant), Ok(()));
        assert_eq!(within(&admin(), &admin(), &constant), Ok(()));
        assert!(is_super(&admin(), &constant));
        // null entry and identity rules are unrestricted too
        assert!(is_super(
            &role(Effect::Deny, None, [Some("true"), None, None]),
            &constant
        ));
        // a null twin rule keeps foreign accounts out: not super
        assert!(!is_super(
            &role(Effect::Deny, None, [None, None, None]),
            &constant
        ));
        assert!(!is_super(
            &role(
                Effect::Deny,
                Some(&["get_twin"]),
                [Some("true"), None, None]
            ),
            &constant
        ));
    }

    #[test]
    fn an_action_the_caller_lacks_is_an_excess() {
        let mine = role(
            Effect::Allow,
            Some(&["update_user", "get_user_roles"]),
            [None, None, None],
        );
        assert_eq!(
            within(&mine, &admin(), &constant),
            Err(Excess::Action("get_account"))
        );
        let theirs = role(Effect::Allow, Some(&["update_user"]), [None, None, None]);
        assert_eq!(within(&mine, &theirs, &constant), Ok(()));
    }

    #[test]
    fn rules_are_within_when_equal_mine_unrestricted_or_theirs_constant_false() {
        let c: Constant = &constant;
        // same rule (whitespace aside)
        assert!(rule_within(
            Slot::Entry,
            Some("entry_name == 'a'"),
            Some(" entry_name == 'a' "),
            c
        ));
        // mine unrestricted
        assert!(rule_within(
            Slot::Entry,
            None,
            Some("LEDGER.x =~ DICT.p"),
            c
        ));
        assert!(rule_within(Slot::Twin, Some("true"), None, c));
        // theirs reaches nothing
        assert!(rule_within(
            Slot::Twin,
            Some("TWIN.a == 1"),
            Some("false"),
            c
        ));
        // broader: a restricted rule of mine, theirs null, "true" or different
        assert!(!rule_within(
            Slot::Entry,
            Some("entry_name == 'a'"),
            None,
            c
        ));
        assert!(!rule_within(
            Slot::Entry,
            Some("entry_name == 'a'"),
            Some("true"),
            c
        ));
        assert!(!rule_within(
            Slot::Entry,
            Some("entry_name == 'a'"),
            Some("entry_name == 'b'"),
            c
        ));
        // a null twin rule (own account only) does not cover foreign twins
        assert!(!rule_within(Slot::Twin, None, Some("true"), c));
        assert!(rule_within(Slot::Twin, None, None, c));
        // nor does a restricted one cover a null one (all own twins)
        assert!(!rule_within(Slot::Twin, Some("TWIN.a == 1"), None, c));
    }

    #[test]
    fn same_actions_broader_rules_is_an_excess() {
        let mine = role(
            Effect::Deny,
            None,
            [Some("true"), Some("entry_name == 'a'"), None],
        );
        let theirs = role(Effect::Deny, None, [Some("true"), Some("true"), None]);
        assert_eq!(
            within(&mine, &theirs, &constant),
            Err(Excess::Rule(Slot::Entry))
        );
        let narrower = role(
            Effect::Allow,
            Some(&["get_twin"]),
            [Some("true"), Some("entry_name == 'a'"), Some("false")],
        );
        assert_eq!(within(&mine, &narrower, &constant), Ok(()));
    }
}
