//! Roles and privileges: who may log in (with what SCRAM secret), which roles each role is a
//! member of, and the access control lists objects carry.

use serde::{Deserialize, Serialize};

/// The oid of the superuser made at first start, as PostgreSQL's bootstrap superuser.
pub const BOOTSTRAP_ROLE_OID: u32 = 10;

/// A role (a user when it may log in). Persisted as JSON under `'m' role/<name>`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RoleDef {
    pub name: String,
    pub oid: u32,
    pub superuser: bool,
    pub login: bool,
    pub create_role: bool,
    pub create_db: bool,
    pub inherit: bool,
    /// `CONNECTION LIMIT`; -1 for none.
    pub connection_limit: i32,
    /// What SCRAM-SHA-256 checks a password against; `None`: no password login.
    pub password: Option<ScramSecret>,
    /// Roles this role is a member of (and so has the privileges of).
    pub member_of: Vec<String>,
}

impl RoleDef {
    /// A role with PostgreSQL's `CREATE ROLE name` defaults.
    pub fn new(name: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            oid: 0,
            superuser: false,
            login: false,
            create_role: false,
            create_db: false,
            inherit: true,
            connection_limit: -1,
            password: None,
            member_of: Vec::new(),
        }
    }
}

/// A SCRAM-SHA-256 secret: the salted password (PBKDF2 of the password) with its salt and
/// iteration count. The password itself is never stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScramSecret {
    pub iterations: u32,
    pub salt: Vec<u8>,
    pub salted_password: Vec<u8>,
}

/// Privileges on tables, views and sources (and `CREATE`/`USAGE` on the schema), as bits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Privileges(pub u16);

impl Privileges {
    pub const NONE: Privileges = Privileges(0);
    pub const SELECT: Privileges = Privileges(1);
    pub const INSERT: Privileges = Privileges(1 << 1);
    pub const UPDATE: Privileges = Privileges(1 << 2);
    pub const DELETE: Privileges = Privileges(1 << 3);
    pub const TRUNCATE: Privileges = Privileges(1 << 4);
    pub const REFERENCES: Privileges = Privileges(1 << 5);
    pub const TRIGGER: Privileges = Privileges(1 << 6);
    pub const CREATE: Privileges = Privileges(1 << 7);
    pub const USAGE: Privileges = Privileges(1 << 8);
    /// Everything `GRANT ALL` gives on a table, view or source.
    pub const ALL_TABLE: Privileges = Privileges(0x7f);
    /// Everything `GRANT ALL` gives on a schema.
    pub const ALL_SCHEMA: Privileges = Privileges((1 << 7) | (1 << 8));

    /// PostgreSQL's aclitem letters, in its order.
    const LETTERS: [(Privileges, char, &'static str); 9] = [
        (Self::INSERT, 'a', "INSERT"),
        (Self::SELECT, 'r', "SELECT"),
        (Self::UPDATE, 'w', "UPDATE"),
        (Self::DELETE, 'd', "DELETE"),
        (Self::TRUNCATE, 'D', "TRUNCATE"),
        (Self::REFERENCES, 'x', "REFERENCES"),
        (Self::TRIGGER, 't', "TRIGGER"),
        (Self::USAGE, 'U', "USAGE"),
        (Self::CREATE, 'C', "CREATE"),
    ];

    pub fn contains(self, other: Privileges) -> bool {
        self.0 & other.0 == other.0
    }

    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    pub fn union(self, other: Privileges) -> Privileges {
        Privileges(self.0 | other.0)
    }

    pub fn minus(self, other: Privileges) -> Privileges {
        Privileges(self.0 & !other.0)
    }

    /// The aclitem letters (`arwd`).
    pub fn letters(self) -> String {
        Self::LETTERS
            .iter()
            .filter(|(p, ..)| self.contains(*p))
            .map(|(_, c, _)| *c)
            .collect()
    }

    /// Each privilege's name (`SELECT`, …), in aclitem order.
    pub fn names(self) -> impl Iterator<Item = &'static str> {
        Self::LETTERS
            .iter()
            .filter(move |(p, ..)| self.contains(*p))
            .map(|(_, _, n)| *n)
    }

    /// The privilege called `name` (case-insensitive).
    pub fn from_name(name: &str) -> Option<Privileges> {
        Self::LETTERS
            .iter()
            .find(|(_, _, n)| n.eq_ignore_ascii_case(name))
            .map(|(p, ..)| *p)
    }
}

/// One grant: `privileges` given to `grantee` (`""`: PUBLIC, every role) by `grantor`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AclItem {
    pub grantee: String,
    pub privileges: Privileges,
    pub grantor: String,
}

/// Adds `privileges` for `grantee` to `acl`.
pub fn grant(acl: &mut Vec<AclItem>, grantee: &str, privileges: Privileges, grantor: &str) {
    match acl.iter_mut().find(|i| i.grantee == grantee) {
        Some(item) => item.privileges = item.privileges.union(privileges),
        None => acl.push(AclItem {
            grantee: grantee.to_owned(),
            privileges,
            grantor: grantor.to_owned(),
        }),
    }
}

/// Removes `privileges` of `grantee` from `acl`.
pub fn revoke(acl: &mut Vec<AclItem>, grantee: &str, privileges: Privileges) {
    for item in acl.iter_mut().filter(|i| i.grantee == grantee) {
        item.privileges = item.privileges.minus(privileges);
    }
    acl.retain(|i| !i.privileges.is_empty());
}

/// An object's ACL as PostgreSQL shows it (`relacl`): `None` while nothing was ever granted
/// (the owner's defaults), else the owner's entry and each grant (`grantee=arwd/grantor`,
/// `=r/grantor` for PUBLIC).
pub fn render_acl(owner: &str, owner_privileges: Privileges, acl: &[AclItem]) -> Option<Vec<String>> {
    if acl.is_empty() {
        return None;
    }
    let mut out = vec![format!(
        "{}={}/{}",
        quote_role(owner),
        owner_privileges.letters(),
        quote_role(owner)
    )];
    out.extend(acl.iter().filter(|i| i.grantee != owner).map(|i| {
        let who = if i.grantee.is_empty() {
            String::new()
        } else {
            quote_role(&i.grantee)
        };
        format!("{who}={}/{}", i.privileges.letters(), quote_role(&i.grantor))
    }));
    Some(out)
}

/// A role name in an aclitem: double-quoted when it holds anything but lower-case
/// letters, digits and underscores.
pub fn quote_role(name: &str) -> String {
    if name
        .chars()
        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
    {
        name.to_owned()
    } else {
        format!("\"{}\"", name.replace('"', "\"\""))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn acl_renders_as_postgresql() {
        let mut acl = Vec::new();
        assert_eq!(render_acl("alice", Privileges::ALL_TABLE, &acl), None);
        grant(&mut acl, "bi", Privileges::SELECT, "alice");
        grant(&mut acl, "", Privileges::SELECT.union(Privileges::INSERT), "alice");
        grant(&mut acl, "bi", Privileges::UPDATE, "alice");
        assert_eq!(
            render_acl("alice", Privileges::ALL_TABLE, &acl).unwrap(),
            vec!["alice=arwdDxt/alice", "bi=rw/alice", "=ar/alice"]
        );
        revoke(&mut acl, "bi", Privileges::ALL_TABLE);
        assert_eq!(acl.len(), 1);
        assert_eq!(Privileges::from_name("select"), Some(Privileges::SELECT));
    }
}
