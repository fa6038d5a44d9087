//! `pg_catalog.pg_roles`, `pg_authid`, `pg_user` and `pg_auth_members` from the catalog's
//! roles (psql `\du`, drivers' role lookups), computed when a statement looks them up; and
//! `pg_policy`, empty (there is no row security), typed as psql's `\dp` reads it.

use std::sync::Arc;

use datafusion::arrow::array::{
    Array, ArrayRef, BooleanArray, Int32Array, ListBuilder, RecordBatch, StringArray, StringBuilder,
    TimestampMicrosecondArray,
};
use datafusion::arrow::datatypes::{DataType, Field, Schema, TimeUnit};
use datafusion::catalog::TableProvider;
use datafusion::datasource::MemTable;
use datafusion::error::Result;
use freshet_catalog::{Catalog, RoleDef};

/// The relations this module answers for.
pub const ROLE_TABLES: &[&str] = &["pg_roles", "pg_authid", "pg_user", "pg_auth_members", "pg_policy"];

/// The role relation `name`, as of now.
pub fn role_table(catalog: &Catalog, name: &str) -> Result<Option<Arc<dyn TableProvider>>> {
    let roles = catalog.roles();
    let (fields, columns): (Vec<Field>, Vec<ArrayRef>) = match name {
        "pg_roles" | "pg_authid" => {
            let mut cols = vec![
                text("rolname", &roles, |r| Some(r.name.clone())),
                flag("rolsuper", &roles, |r| r.superuser),
                flag("rolinherit", &roles, |r| r.inherit),
                flag("rolcreaterole", &roles, |r| r.create_role),
                flag("rolcreatedb", &roles, |r| r.create_db),
                flag("rolcanlogin", &roles, |r| r.login),
                flag("rolreplication", &roles, |_| false),
                int("rolconnlimit", &roles, |r| r.connection_limit),
                // Never the secret itself (PostgreSQL's pg_roles shows asterisks too).
                text("rolpassword", &roles, |r| r.password.as_ref().map(|_| "********".into())),
                (
                    Field::new("rolvaliduntil", DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())), true),
                    Arc::new(TimestampMicrosecondArray::from(vec![None; roles.len()]).with_timezone("UTC")) as ArrayRef,
                ),
                flag("rolbypassrls", &roles, |_| false),
            ];
            if name == "pg_roles" {
                cols.push(text_list("rolconfig", roles.len()));
            }
            cols.push(int("oid", &roles, |r| r.oid as i32));
            cols.into_iter().unzip()
        }
        "pg_user" => {
            let users: Vec<Arc<RoleDef>> = roles.into_iter().filter(|r| r.login).collect();
            vec![
                text("usename", &users, |r| Some(r.name.clone())),
                int("usesysid", &users, |r| r.oid as i32),
                flag("usecreatedb", &users, |r| r.create_db),
                flag("usesuper", &users, |r| r.superuser),
                flag("userepl", &users, |_| false),
                flag("usebypassrls", &users, |_| false),
                text("passwd", &users, |r| r.password.as_ref().map(|_| "********".into())),
                (
                    Field::new("valuntil", DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())), true),
                    Arc::new(TimestampMicrosecondArray::from(vec![None; users.len()]).with_timezone("UTC")) as ArrayRef,
                ),
                text_list("useconfig", users.len()),
            ]
            .into_iter()
            .unzip()
        }
        "pg_auth_members" => {
            let grantor = catalog.bootstrap_role().map_or(10, |r| r.oid as i32);
            let mut pairs = Vec::new();
            for r in &roles {
                for m in &r.member_of {
                    if let Some(role) = catalog.role(m) {
                        pairs.push((role.oid as i32, r.oid as i32));
                    }
                }
            }
            let n = pairs.len();
            vec![
                (Field::new("oid", DataType::Int32, false), Arc::new(Int32Array::from_iter_values((0..n).map(|i| 1_000_000 + i as i32))) as ArrayRef),
                (Field::new("roleid", DataType::Int32, false), Arc::new(Int32Array::from_iter_values(pairs.iter().map(|p| p.0)))),
                (Field::new("member", DataType::Int32, false), Arc::new(Int32Array::from_iter_values(pairs.iter().map(|p| p.1)))),
                (Field::new("grantor", DataType::Int32, false), Arc::new(Int32Array::from(vec![grantor; n]))),
                (Field::new("admin_option", DataType::Boolean, false), Arc::new(BooleanArray::from(vec![false; n]))),
                (Field::new("inherit_option", DataType::Boolean, false), Arc::new(BooleanArray::from(vec![true; n]))),
                (Field::new("set_option", DataType::Boolean, false), Arc::new(BooleanArray::from(vec![true; n]))),
            ]
            .into_iter()
            .unzip()
        }
        "pg_policy" => {
            let oids = DataType::List(Arc::new(Field::new("item", DataType::Int32, true)));
            let fields = vec![
                Field::new("oid", DataType::Int32, false),
                Field::new("polname", DataType::Utf8, false),
                Field::new("polrelid", DataType::Int32, false),
                Field::new("polcmd", DataType::Utf8, false),
                Field::new("polpermissive", DataType::Boolean, false),
                Field::new("polroles", oids, false),
                Field::new("polqual", DataType::Utf8, true),
                Field::new("polwithcheck", DataType::Utf8, true),
            ];
            let columns = fields
                .iter()
                .map(|f| datafusion::arrow::array::new_empty_array(f.data_type()))
                .collect();
            (fields, columns)
        }
        _ => return Ok(None),
    };
    let schema = Arc::new(Schema::new(fields));
    let batch = RecordBatch::try_new(Arc::clone(&schema), columns)?;
    Ok(Some(Arc::new(MemTable::try_new(schema, vec![vec![batch]])?)))
}

fn text(name: &str, roles: &[Arc<RoleDef>], f: impl Fn(&RoleDef) -> Option<String>) -> (Field, ArrayRef) {
    (
        Field::new(name, DataType::Utf8, true),
        Arc::new(roles.iter().map(|r| f(r)).collect::<StringArray>()),
    )
}

fn flag(name: &str, roles: &[Arc<RoleDef>], f: impl Fn(&RoleDef) -> bool) -> (Field, ArrayRef) {
    (
        Field::new(name, DataType::Boolean, false),
        Arc::new(roles.iter().map(|r| Some(f(r))).collect::<BooleanArray>()),
    )
}

fn int(name: &str, roles: &[Arc<RoleDef>], f: impl Fn(&RoleDef) -> i32) -> (Field, ArrayRef) {
    (
        Field::new(name, DataType::Int32, false),
        Arc::new(Int32Array::from_iter_values(roles.iter().map(|r| f(r)))),
    )
}

fn text_list(name: &str, n: usize) -> (Field, ArrayRef) {
    let mut b = ListBuilder::new(StringBuilder::new());
    for _ in 0..n {
        b.append(false);
    }
    let array = b.finish();
    (Field::new(name, array.data_type().clone(), true), Arc::new(array))
}
