//! The built-in roles (SPEC §8) and the role set a user holds: the union
//! of its granted roles; a superuser (`admin`) holds them all.

use cohortdb_storage::catalog::UserDef;
use cohortdb_storage::Store;

/// A built-in role.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Everything.
    Admin,
    /// Contacts, groups, tags, journeys, sends (and reading).
    Operator,
    /// Read views and run analytics.
    Analyst,
    /// Reads masked columns unmasked (a privilege role: grants no statement).
    Unmasked,
}

impl Role {
    /// Every role, in the order listings show them.
    pub const ALL: &'static [Role] = &[Role::Admin, Role::Operator, Role::Analyst, Role::Unmasked];

    /// The role's name.
    pub fn name(self) -> &'static str {
        match self {
            Role::Admin => "cohort_admin",
            Role::Operator => "cohort_operator",
            Role::Analyst => "cohort_analyst",
            Role::Unmasked => "cohort_unmasked",
        }
    }

    /// The role called `name` (case-insensitive).
    pub fn from_name(name: &str) -> Option<Role> {
        let name = name.to_ascii_lowercase();
        Role::ALL.iter().copied().find(|r| r.name() == name)
    }

    fn bit(self) -> u8 {
        match self {
            Role::Admin => 1,
            Role::Operator => 2,
            Role::Analyst => 4,
            Role::Unmasked => 8,
        }
    }
}

/// The roles one user holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RoleSet(u8);

impl RoleSet {
    /// Every role (superusers, and trusted connections as users the
    /// catalog does not know).
    pub const ALL: RoleSet = RoleSet(15);

    /// The roles of `user`.
    pub fn of(user: &UserDef) -> RoleSet {
        if user.superuser {
            return RoleSet::ALL;
        }
        let mut s = RoleSet(0);
        for r in user.roles.iter().filter_map(|n| Role::from_name(n)) {
            s.0 |= r.bit();
        }
        s
    }

    /// The roles of the user called `name`; a name the catalog does not
    /// know holds every role only where connections are trusted (no
    /// passwords: loopback only, SPEC §2), none otherwise.
    pub fn of_name(store: &Store, name: &str) -> RoleSet {
        match store.catalog().user(name) {
            Some(u) => RoleSet::of(u),
            None if !crate::access::users::passwords_required(store) => RoleSet::ALL,
            None => RoleSet(0),
        }
    }

    /// True when `role` is held.
    pub fn has(self, role: Role) -> bool {
        self.0 & role.bit() != 0
    }

    /// `cohort_admin`.
    pub fn admin(self) -> bool {
        self.has(Role::Admin)
    }

    /// May change contacts, groups, tags, journeys and sends.
    pub fn operate(self) -> bool {
        self.has(Role::Admin) || self.has(Role::Operator)
    }

    /// May read tables and views and run analytics.
    pub fn read(self) -> bool {
        self.has(Role::Admin) || self.has(Role::Operator) || self.has(Role::Analyst)
    }

    /// Sees masked columns unmasked.
    pub fn unmasked(self) -> bool {
        self.has(Role::Admin) || self.has(Role::Unmasked)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(roles: &[&str], superuser: bool) -> UserDef {
        UserDef {
            name: "u".into(),
            superuser,
            scram: None,
            roles: roles.iter().map(|s| s.to_string()).collect(),
        }
    }

    #[test]
    fn union_of_roles() {
        let none = RoleSet::of(&user(&[], false));
        assert!(!none.read() && !none.operate() && !none.admin() && !none.unmasked());
        let a = RoleSet::of(&user(&["cohort_analyst"], false));
        assert!(a.read() && !a.operate() && !a.unmasked());
        let au = RoleSet::of(&user(&["cohort_analyst", "cohort_unmasked"], false));
        assert!(au.read() && au.unmasked() && !au.operate());
        let o = RoleSet::of(&user(&["cohort_operator"], false));
        assert!(o.read() && o.operate() && !o.admin());
        let s = RoleSet::of(&user(&[], true));
        assert!(s.admin() && s.unmasked());
        for r in Role::ALL {
            assert_eq!(Role::from_name(&r.name().to_uppercase()), Some(*r));
        }
        let names: Vec<&str> = Role::ALL.iter().map(|r| r.name()).collect();
        assert_eq!(names, cohortdb_storage::catalog::BUILTIN_ROLES);
    }
}
