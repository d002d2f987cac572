//! What the background workers may do on behalf of others: which maintenance
//! functions they call, and when a database-level command may move a worker away.

/// Facts about a function named in `pgq.queue.queue_extra_maint` (or returned by
/// `pgq.maint_operations()`), looked up in the catalog by the worker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MaintFunction {
    /// the owner is a superuser
    pub owner_is_superuser: bool,
    /// the owner has the privileges of the role the worker runs as (is that role, or a
    /// member of it), so it could do what the worker does anyway
    pub owner_has_worker_rights: bool,
    /// the function lives in a temporary schema (some session's pg_temp_N)
    pub in_temp_schema: bool,
}

/// The worker calls a maintenance function with its own rights only when the function's
/// owner could act with those rights already: a function written by anyone else would
/// run their code with the worker's privileges.
pub fn may_call(f: &MaintFunction) -> Result<(), &'static str> {
    if f.in_temp_schema {
        return Err("it lives in a temporary schema");
    }
    if f.owner_is_superuser || f.owner_has_worker_rights {
        Ok(())
    } else {
        Err("its owner is neither a superuser nor has the privileges of the worker's role")
    }
}

/// A database-level command that needs the database to itself (the ticker is asked
/// to leave first), and what PostgreSQL will require of the user for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DbCommand {
    Drop,
    /// CREATE DATABASE ... TEMPLATE <this>; `is_template`: datistemplate of the source
    CopyFrom {
        is_template: bool,
    },
    Rename,
    SetTablespace,
}

/// The user's standing towards the database in question.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Caller {
    pub superuser: bool,
    /// owner of the database (or a member of its owning role)
    pub owner: bool,
    /// CREATEDB (or superuser)
    pub createdb: bool,
}

/// Whether the command will pass PostgreSQL's own permission checks, so that moving the
/// worker away first is not something any user can trigger with a command that fails.
pub fn may_evict(cmd: DbCommand, c: Caller) -> bool {
    if c.superuser {
        return true;
    }
    match cmd {
        DbCommand::Drop | DbCommand::SetTablespace => c.owner,
        DbCommand::Rename => c.owner && c.createdb,
        DbCommand::CopyFrom { is_template } => c.createdb && (is_template || c.owner),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maint_functions() {
        let base = MaintFunction {
            owner_is_superuser: false,
            owner_has_worker_rights: false,
            in_temp_schema: false,
        };
        assert!(may_call(&base).is_err());
        assert!(may_call(&MaintFunction {
            owner_is_superuser: true,
            ..base
        })
        .is_ok());
        assert!(may_call(&MaintFunction {
            owner_has_worker_rights: true,
            ..base
        })
        .is_ok());
        // even a superuser's function is refused from a temp schema
        assert!(may_call(&MaintFunction {
            owner_is_superuser: true,
            in_temp_schema: true,
            ..base
        })
        .is_err());
    }

    #[test]
    fn eviction_follows_postgres_permission_rules() {
        let nobody = Caller {
            superuser: false,
            owner: false,
            createdb: false,
        };
        let owner = Caller {
            owner: true,
            ..nobody
        };
        let creator = Caller {
            createdb: true,
            ..nobody
        };
        let su = Caller {
            superuser: true,
            ..nobody
        };
        for cmd in [
            DbCommand::Drop,
            DbCommand::Rename,
            DbCommand::SetTablespace,
            DbCommand::CopyFrom { is_template: false },
            DbCommand::CopyFrom { is_template: true },
        ] {
            assert!(!may_evict(cmd, nobody), "{cmd:?}");
            assert!(may_evict(cmd, su), "{cmd:?}");
        }
        assert!(may_evict(DbCommand::Drop, owner));
        assert!(may_evict(DbCommand::SetTablespace, owner));
        assert!(!may_evict(DbCommand::Rename, owner));
        assert!(may_evict(
            DbCommand::Rename,
            Caller {
                createdb: true,
                ..owner
            }
        ));
        assert!(!may_evict(DbCommand::Drop, creator));
        assert!(may_evict(
            DbCommand::CopyFrom { is_template: true },
            creator
        ));
        assert!(!may_evict(
            DbCommand::CopyFrom { is_template: false },
            creator
        ));
        assert!(!may_evict(DbCommand::CopyFrom { is_template: true }, owner));
    }
}
