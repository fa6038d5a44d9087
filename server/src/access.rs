//! Who a session is and what it may do: identities, privilege checks (42501), and the role
//! and privilege statements (`CREATE ROLE`, `GRANT`, …).

use std::sync::Arc;

use freshet_catalog::{
    Catalog, ObjectAccess, ObjectKind, Privileges, RoleDef, ScramSecret,
};
use freshet_common::{PgError, SqlState};
use freshet_sql::role::{GrantOn, GrantPlan, Grantee, RoleOptions, RoleStatement};

use crate::error::user_error;

/// SCRAM iterations for new secrets (PostgreSQL's default).
pub const SCRAM_ITERATIONS: u32 = 4096;

/// Who a session acts as.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// `session_user`: the name the client logged in with.
    pub session_user: String,
    /// `current_user`: `session_user`, or the role `SET ROLE` chose.
    pub current_user: String,
    /// A trusted (loopback, `--auth trust`) login with a name that is no role: it acts as a
    /// superuser, as every trusted login may become one.
    pub unlisted_superuser: bool,
}

impl Identity {
    /// The identity of a login as `role`.
    pub fn login(role: &str, unlisted_superuser: bool) -> Identity {
        Identity {
            session_user: role.to_owned(),
            current_user: role.to_owned(),
            unlisted_superuser,
        }
    }

    /// Nobody: before a login completes, nothing is allowed.
    pub fn nobody() -> Identity {
        Identity::login("", false)
    }

    /// Whether the current user is a superuser.
    pub fn is_superuser(&self, catalog: &Catalog) -> bool {
        (self.unlisted_superuser && self.current_user == self.session_user)
            || catalog
                .role(&self.current_user)
                .is_some_and(|r| r.superuser)
    }

    /// Whether the current user has every one of `want` on `object`: as a superuser, as its
    /// owner (or a member of the owner), or through a grant to PUBLIC or a role it is a
    /// member of.
    pub fn has(&self, catalog: &Catalog, object: &ObjectAccess, want: Privileges) -> bool {
        if self.is_superuser(catalog) {
            return true;
        }
        let mine = catalog.roles_of(&self.current_user);
        if mine.contains(&object.owner) {
            return true;
        }
        let granted = object
            .acl
            .iter()
            .filter(|i| i.grantee.is_empty() || mine.contains(&i.grantee))
            .fold(Privileges::NONE, |p, i| p.union(i.privileges));
        granted.contains(want)
    }

    /// 42501 unless the current user has `want` on the table, view or source `name`.
    /// Names that are no such object pass (their own errors come later).
    pub fn require(&self, catalog: &Catalog, name: &str, want: Privileges) -> Result<(), PgError> {
        match catalog.object_access(name) {
            Some(a) if !self.has(catalog, &a, want) => Err(denied(a.kind, name)),
            _ => Ok(()),
        }
    }

    /// 42501 unless the current user owns `object` (or is a superuser).
    pub fn require_owner(&self, catalog: &Catalog, object: &ObjectAccess) -> Result<(), PgError> {
        if self.is_superuser(catalog) || catalog.roles_of(&self.current_user).contains(&object.owner) {
            return Ok(());
        }
        Err(PgError::new(
            SqlState::INSUFFICIENT_PRIVILEGE,
            format!("must be owner of {} {}", object.kind.noun(), object.name),
        ))
    }

    /// 42501 unless the current user owns the object called `name`, when there is one.
    pub fn require_owner_of(&self, catalog: &Catalog, name: &str) -> Result<(), PgError> {
        let access = catalog.object_access(name).or_else(|| {
            catalog
                .objects_access()
                .into_iter()
                .find(|a| a.kind == ObjectKind::Sink && a.name == name)
        });
        match access {
            Some(a) => self.require_owner(catalog, &a),
            None => Ok(()),
        }
    }

    /// 42501 unless the current user may create objects in `public`.
    pub fn require_create(&self, catalog: &Catalog) -> Result<(), PgError> {
        if self.is_superuser(catalog) {
            return Ok(());
        }
        let mine = catalog.roles_of(&self.current_user);
        let ok = catalog.schema_acl().iter().any(|i| {
            (i.grantee.is_empty() || mine.contains(&i.grantee))
                && i.privileges.contains(Privileges::CREATE)
        });
        if ok {
            Ok(())
        } else {
            Err(PgError::new(
                SqlState::INSUFFICIENT_PRIVILEGE,
                "permission denied for schema public",
            ))
        }
    }

    /// The role new objects are owned by: the current user, or the bootstrap superuser for a
    /// login that is no role.
    pub fn owner_for_new(&self, catalog: &Catalog) -> String {
        if catalog.role(&self.current_user).is_some() {
            self.current_user.clone()
        } else {
            String::new()
        }
    }

    fn can_manage_roles(&self, catalog: &Catalog) -> bool {
        self.is_superuser(catalog)
            || catalog
                .role(&self.current_user)
                .is_some_and(|r| r.create_role)
    }
}

/// PostgreSQL's "permission denied for table t".
pub fn denied(kind: ObjectKind, name: &str) -> PgError {
    PgError::new(
        SqlState::INSUFFICIENT_PRIVILEGE,
        format!("permission denied for {} {name}", kind.noun()),
    )
}

/// The SCRAM secret of `password`, with a fresh salt.
pub fn scram_secret(password: &str) -> ScramSecret {
    let salt: [u8; 16] = rand::random();
    let salted =
        pgwire::api::auth::sasl::scram::gen_salted_password(password, &salt, SCRAM_ITERATIONS as usize);
    ScramSecret {
        iterations: SCRAM_ITERATIONS,
        salt: salt.to_vec(),
        salted_password: salted,
    }
}

/// Creates the bootstrap superuser `name` when the catalog has no roles yet, or gives it
/// `password` when it has none.
pub fn bootstrap(catalog: &Catalog, name: &str, password: Option<&str>) -> anyhow::Result<()> {
    match catalog.bootstrap_role() {
        None => {
            let mut def = RoleDef::new(name);
            def.oid = freshet_catalog::BOOTSTRAP_ROLE_OID;
            def.superuser = true;
            def.login = true;
            def.create_role = true;
            def.create_db = true;
            def.password = password.map(scram_secret);
            catalog.create_role(def)?;
        }
        Some(r) if r.password.is_none() && password.is_some() => {
            let secret = password.map(scram_secret);
            catalog.alter_role(&r.name, |d| {
                d.password = secret;
                Ok(())
            })?;
        }
        Some(_) => {}
    }
    Ok(())
}

/// Runs a role or privilege statement as `who`; returns its command tag.
pub fn execute(
    catalog: &Catalog,
    who: &Identity,
    stmt: RoleStatement,
) -> Result<&'static str, PgError> {
    if let RoleStatement::Create { options, .. } | RoleStatement::Alter { options, .. } = &stmt {
        if let Some(Some(p)) = &options.password {
            check_clear_text(p)?;
        }
    }
    match stmt {
        RoleStatement::Create { name, options } => {
            require_role_admin(catalog, who, "create role")?;
            if options.superuser == Some(true) && !who.is_superuser(catalog) {
                return Err(PgError::new(
                    SqlState::INSUFFICIENT_PRIVILEGE,
                    "permission denied to create role",
                )
                .with_detail("Only roles with the SUPERUSER attribute may create roles with the SUPERUSER attribute."));
            }
            if name == "public" || name.starts_with("pg_") {
                return Err(PgError::new(
                    SqlState::RESERVED_NAME,
                    format!("role name \"{name}\" is reserved"),
                ));
            }
            let mut def = RoleDef::new(&name);
            apply_options(&mut def, &options);
            def.member_of = options.in_role.clone();
            catalog.create_role(def).map_err(user_error)?;
            for member in &options.members {
                catalog
                    .alter_role(member, |m| {
                        if !m.member_of.contains(&name) {
                            m.member_of.push(name.clone());
                        }
                        Ok(())
                    })
                    .map_err(user_error)?;
            }
            Ok("CREATE ROLE")
        }
        RoleStatement::Alter { name, options } => {
            let name = resolve_special(who, &name);
            let target = catalog
                .role(&name)
                .ok_or_else(|| user_error(freshet_catalog::Error::UndefinedRole(name.clone())))?;
            // A role may change its own password; everything else needs CREATEROLE, and
            // superusers only a superuser.
            let own_password_only = name == who.current_user
                && options == RoleOptions {
                    password: options.password.clone(),
                    ..RoleOptions::default()
                };
            if !own_password_only {
                require_role_admin(catalog, who, "alter role")?;
                if (target.superuser || options.superuser.is_some()) && !who.is_superuser(catalog) {
                    return Err(PgError::new(
                        SqlState::INSUFFICIENT_PRIVILEGE,
                        "permission denied to alter role",
                    )
                    .with_detail("Only roles with the SUPERUSER attribute may alter roles with the SUPERUSER attribute."));
                }
            }
            catalog
                .alter_role(&name, |d| {
                    apply_options(d, &options);
                    Ok(())
                })
                .map_err(user_error)?;
            Ok("ALTER ROLE")
        }
        RoleStatement::Drop { names, if_exists } => {
            require_role_admin(catalog, who, "drop role")?;
            for name in &names {
                if *name == who.session_user || *name == who.current_user {
                    return Err(PgError::new(
                        SqlState::OBJECT_IN_USE,
                        "current user cannot be dropped",
                    ));
                }
                if catalog.role(name).is_some_and(|r| r.superuser) && !who.is_superuser(catalog) {
                    return Err(PgError::new(
                        SqlState::INSUFFICIENT_PRIVILEGE,
                        "permission denied to drop role",
                    ));
                }
                if !catalog.drop_role(name).map_err(user_error)? {
                    if !if_exists {
                        return Err(user_error(freshet_catalog::Error::UndefinedRole(name.clone())));
                    }
                }
            }
            Ok("DROP ROLE")
        }
        RoleStatement::Grant(plan) => {
            change_privileges(catalog, who, &plan, true)?;
            Ok("GRANT")
        }
        RoleStatement::Revoke(plan) => {
            change_privileges(catalog, who, &plan, false)?;
            Ok("REVOKE")
        }
        RoleStatement::GrantMembership { roles, members } => {
            change_membership(catalog, who, &roles, &members, true)?;
            Ok("GRANT ROLE")
        }
        RoleStatement::RevokeMembership { roles, members } => {
            change_membership(catalog, who, &roles, &members, false)?;
            Ok("REVOKE ROLE")
        }
    }
}

/// A password given already hashed (psql's `\password` sends a SCRAM verifier) cannot be
/// turned into the secret this server keeps.
fn check_clear_text(password: &str) -> Result<(), PgError> {
    let md5 = password.len() == 35
        && password.starts_with("md5")
        && password[3..].chars().all(|c| c.is_ascii_hexdigit());
    if password.starts_with("SCRAM-SHA-256$") || md5 {
        return Err(PgError::not_supported("passwords given already hashed")
            .with_hint("Give the password itself (over TLS): ALTER ROLE name PASSWORD '…'."));
    }
    Ok(())
}

fn require_role_admin(catalog: &Catalog, who: &Identity, what: &str) -> Result<(), PgError> {
    if who.can_manage_roles(catalog) {
        Ok(())
    } else {
        Err(PgError::new(
            SqlState::INSUFFICIENT_PRIVILEGE,
            format!("permission denied to {what}"),
        ))
    }
}

fn apply_options(def: &mut RoleDef, o: &RoleOptions) {
    if let Some(v) = o.superuser {
        def.superuser = v;
    }
    if let Some(v) = o.login {
        def.login = v;
    }
    if let Some(v) = o.create_role {
        def.create_role = v;
    }
    if let Some(v) = o.create_db {
        def.create_db = v;
    }
    if let Some(v) = o.inherit {
        def.inherit = v;
    }
    if let Some(v) = o.connection_limit {
        def.connection_limit = v;
    }
    if let Some(p) = &o.password {
        def.password = p.as_deref().map(scram_secret);
    }
}

fn resolve_special(who: &Identity, name: &str) -> String {
    match name {
        "current_user" => who.current_user.clone(),
        "session_user" => who.session_user.clone(),
        n => n.to_owned(),
    }
}

/// A grantee's role name (`""` for PUBLIC); 42704 for a role that does not exist.
fn grantee_name(catalog: &Catalog, who: &Identity, g: &Grantee) -> Result<String, PgError> {
    let name = match g {
        Grantee::Public => return Ok(String::new()),
        Grantee::Role(r) => r.clone(),
        Grantee::CurrentUser => who.current_user.clone(),
        Grantee::SessionUser => who.session_user.clone(),
    };
    if catalog.role(&name).is_none() {
        return Err(user_error(freshet_catalog::Error::UndefinedRole(name)));
    }
    Ok(name)
}

fn privileges_of(names: &[String], all: Privileges, on: &str) -> Result<Privileges, PgError> {
    if names.is_empty() {
        return Ok(all);
    }
    let mut p = Privileges::NONE;
    for n in names {
        let one = Privileges::from_name(n)
            .ok_or_else(|| PgError::new(SqlState::SYNTAX_ERROR, format!("unrecognized privilege type \"{n}\"")))?;
        if !all.contains(one) {
            return Err(PgError::new(
                SqlState::INVALID_GRANT_OPERATION,
                format!("invalid privilege type {n} for {on}"),
            ));
        }
        p = p.union(one);
    }
    Ok(p)
}

fn change_privileges(
    catalog: &Catalog,
    who: &Identity,
    plan: &GrantPlan,
    grant: bool,
) -> Result<(), PgError> {
    let grantees = plan
        .grantees
        .iter()
        .map(|g| grantee_name(catalog, who, g))
        .collect::<Result<Vec<_>, _>>()?;
    let grantor = who.current_user.clone();
    if plan.on == GrantOn::Schema {
        let privs = privileges_of(&plan.privileges, Privileges::ALL_SCHEMA, "schema")?;
        if !who.is_superuser(catalog) {
            return Err(PgError::new(
                SqlState::INSUFFICIENT_PRIVILEGE,
                "permission denied for schema public",
            ));
        }
        let mut acl = catalog.schema_acl();
        for g in &grantees {
            if grant {
                freshet_catalog::grant(&mut acl, g, privs, &grantor);
            } else {
                freshet_catalog::revoke(&mut acl, g, privs);
            }
        }
        return catalog.set_schema_acl(acl).map_err(user_error);
    }
    let privs = privileges_of(&plan.privileges, Privileges::ALL_TABLE, "relation")?;
    let objects: Vec<ObjectAccess> = match &plan.on {
        GrantOn::Relations(names) => names
            .iter()
            .map(|n| {
                catalog.object_access(n).ok_or_else(|| {
                    PgError::new(
                        SqlState::UNDEFINED_TABLE,
                        format!("relation \"{n}\" does not exist"),
                    )
                })
            })
            .collect::<Result<_, _>>()?,
        GrantOn::AllInSchema => catalog
            .objects_access()
            .into_iter()
            .filter(|a| a.kind != ObjectKind::Sink)
            .collect(),
        GrantOn::Schema => unreachable!("handled above"),
    };
    // As in PostgreSQL (where only owners hold grant options here): a role with some
    // privilege on an object it does not own grants nothing (PostgreSQL warns "no privileges
    // were granted"); one with none is refused.
    let mut owned = Vec::with_capacity(objects.len());
    for object in objects {
        if who.require_owner(catalog, &object).is_ok() {
            owned.push(object);
        } else if !any_privilege(catalog, who, &object) {
            return Err(denied(object.kind, &object.name));
        }
    }
    for object in owned {
        let mut acl = object.acl.clone();
        for g in &grantees {
            if grant {
                freshet_catalog::grant(&mut acl, g, privs, &object.owner);
            } else {
                freshet_catalog::revoke(&mut acl, g, privs);
            }
        }
        catalog.set_object_acl(&object.name, acl).map_err(user_error)?;
    }
    Ok(())
}

fn any_privilege(catalog: &Catalog, who: &Identity, object: &ObjectAccess) -> bool {
    (0..7).any(|bit| who.has(catalog, object, Privileges(1 << bit)))
}

fn change_membership(
    catalog: &Catalog,
    who: &Identity,
    roles: &[Grantee],
    members: &[Grantee],
    grant: bool,
) -> Result<(), PgError> {
    require_role_admin(catalog, who, if grant { "grant role" } else { "revoke role" })?;
    let roles = roles
        .iter()
        .map(|g| grantee_name(catalog, who, g))
        .collect::<Result<Vec<_>, _>>()?;
    let members = members
        .iter()
        .map(|g| grantee_name(catalog, who, g))
        .collect::<Result<Vec<_>, _>>()?;
    for role in &roles {
        if role.is_empty() {
            return Err(PgError::new(SqlState::UNDEFINED_OBJECT, "role \"public\" does not exist"));
        }
        if catalog.role(role).is_some_and(|r| r.superuser) && !who.is_superuser(catalog) {
            return Err(PgError::new(
                SqlState::INSUFFICIENT_PRIVILEGE,
                format!("permission denied to grant role \"{role}\""),
            ));
        }
        for member in &members {
            catalog
                .alter_role(member, |m| {
                    if grant {
                        if !m.member_of.contains(role) {
                            m.member_of.push(role.clone());
                        }
                    } else {
                        m.member_of.retain(|r| r != role);
                    }
                    Ok(())
                })
                .map_err(user_error)?;
        }
    }
    Ok(())
}

/// `SET ROLE name` / `SET ROLE NONE`: the identity it leads to, when the session user may
/// take that role (a member of it, or a superuser).
pub fn set_role(catalog: &Catalog, who: &Identity, role: Option<&str>) -> Result<Identity, PgError> {
    let Some(role) = role.filter(|r| !r.eq_ignore_ascii_case("none")) else {
        return Ok(Identity {
            current_user: who.session_user.clone(),
            ..who.clone()
        });
    };
    if catalog.role(role).is_none() {
        return Err(user_error(freshet_catalog::Error::UndefinedRole(role.to_owned())));
    }
    let session = Identity {
        current_user: who.session_user.clone(),
        ..who.clone()
    };
    if !session.is_superuser(catalog) && !catalog.roles_of(&who.session_user).contains(role) {
        return Err(PgError::new(
            SqlState::INSUFFICIENT_PRIVILEGE,
            format!("permission denied to set role \"{role}\""),
        ));
    }
    Ok(Identity {
        current_user: role.to_owned(),
        ..who.clone()
    })
}

/// The statement-scoped identity DataFusion scans check `SELECT` against.
#[derive(Debug)]
pub struct StatementIdentity {
    pub identity: Identity,
    pub catalog: Arc<Catalog>,
}

impl StatementIdentity {
    /// The owner of an object the statement creates (see [`Identity::owner_for_new`]).
    pub fn new_owner(state: &dyn datafusion::catalog::Session) -> String {
        state
            .config()
            .get_extension::<StatementIdentity>()
            .map(|s| s.identity.owner_for_new(&s.catalog))
            .unwrap_or_default()
    }

    /// 42501 unless the statement's user may read `name`.
    pub fn require_select(state: &dyn datafusion::catalog::Session, name: &str) -> datafusion::error::Result<()> {
        match state.config().get_extension::<StatementIdentity>() {
            Some(s) => s
                .identity
                .require(&s.catalog, name, Privileges::SELECT)
                .map_err(|e| datafusion::error::DataFusionError::External(Box::new(e))),
            None => Ok(()),
        }
    }
}

/// Connections per login role, for roles' `CONNECTION LIMIT` (superusers are not bound).
#[derive(Debug, Default)]
pub struct RoleConnections {
    counts: std::sync::Mutex<std::collections::HashMap<String, u32>>,
}

/// One connection counted against its role until dropped.
#[derive(Debug)]
pub struct RoleSlot {
    connections: Arc<RoleConnections>,
    role: String,
}

impl RoleConnections {
    fn counts(&self) -> std::sync::MutexGuard<'_, std::collections::HashMap<String, u32>> {
        self.counts
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Counts a connection of `role` (53300 past its limit); `None` for a role without one.
    pub fn admit(self: &Arc<Self>, catalog: &Catalog, role: &str) -> Result<Option<RoleSlot>, PgError> {
        let Some(def) = catalog.role(role) else {
            return Ok(None);
        };
        if def.superuser || def.connection_limit < 0 {
            return Ok(None);
        }
        let mut counts = self.counts();
        let n = counts.entry(role.to_owned()).or_default();
        if *n >= def.connection_limit.unsigned_abs() {
            return Err(PgError::new(
                SqlState::TOO_MANY_CONNECTIONS,
                format!("too many connections for role \"{role}\""),
            ));
        }
        *n += 1;
        Ok(Some(RoleSlot {
            connections: Arc::clone(self),
            role: role.to_owned(),
        }))
    }
}

impl Drop for RoleSlot {
    fn drop(&mut self) {
        let mut counts = self.connections.counts();
        if let Some(n) = counts.get_mut(&self.role) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                counts.remove(&self.role);
            }
        }
    }
}
