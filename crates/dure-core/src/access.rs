//! Who may do what: the roles an API token carries, the permissions routes
//! require, and the one rule joining them. Deny by default: a role allows a
//! permission only where [`Role::allows`] says so.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// The role of an API token.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Reads everything.
    Viewer,
    /// Reads everything, starts, stops, kills and restarts servers and
    /// clusters; changes no configuration.
    Operator,
    /// Everything, tokens and the audit log included.
    Admin,
}

/// What a route requires of its caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Permission {
    /// Anyone, without a token (liveness).
    Public,
    /// Reading state, configuration, events and operations.
    Read,
    /// Server and cluster actions (start, stop, kill, restart) and running
    /// balancers' reports.
    Operate,
    /// Changing the configuration.
    Configure,
    /// Tokens, the audit log and domain packs.
    Admin,
    /// The agent's side of the controller link (registration, desired
    /// state, reports, certificate renewal, artifacts): the node
    /// certificate of the node the call is about — the `{node}` of the
    /// path, or the node a registration names — and the admin token, for
    /// tools and tests; never an operator's or viewer's token.
    Node,
    /// An agent's first call: a one-time join token traded for its node
    /// certificate. No role allows it; only an unused, unexpired join
    /// token does.
    Join,
}

/// Who a caller is, as far as authorization goes: a token with a role, or
/// an agent known by its node certificate.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Principal {
    Token(Role),
    /// The agent of this node, by the certificate the domain CA issued it.
    Node(String),
    /// A join token for this node, good only for joining.
    Join(String),
}

impl Principal {
    /// Whether this caller may do what `permission` guards. A node
    /// certificate reaches only public routes and the agent's own calls
    /// (which node those are about is [`Principal::may_act_for`]); a join
    /// token only the join. Deny by default.
    pub fn allows(&self, permission: Permission) -> bool {
        match self {
            Principal::Token(role) => role.allows(permission),
            Principal::Node(_) => matches!(permission, Permission::Public | Permission::Node),
            Principal::Join(_) => permission == Permission::Join,
        }
    }

    /// Whether a call about `node` is this caller's to make: a node's
    /// certificate acts for its own node only; a token is not bound to one.
    pub fn may_act_for(&self, node: &str) -> bool {
        match self {
            Principal::Token(_) => true,
            Principal::Node(own) | Principal::Join(own) => own == node,
        }
    }

    /// The token's role; `None` for node certificates and join tokens.
    pub fn role(&self) -> Option<Role> {
        match self {
            Principal::Token(role) => Some(*role),
            _ => None,
        }
    }
}

impl Role {
    pub const ALL: [Role; 3] = [Role::Admin, Role::Operator, Role::Viewer];

    /// Whether a caller with this role may do what `permission` guards.
    pub fn allows(self, permission: Permission) -> bool {
        match permission {
            Permission::Public | Permission::Read => true,
            Permission::Operate => matches!(self, Role::Operator | Role::Admin),
            Permission::Configure | Permission::Admin | Permission::Node => self == Role::Admin,
            Permission::Join => false,
        }
    }

    /// The least role that allows `permission`.
    pub fn least_for(permission: Permission) -> Role {
        let mut roles = Role::ALL;
        roles.sort();
        roles
            .into_iter()
            .find(|role| role.allows(permission))
            .unwrap_or(Role::Admin)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Operator => "operator",
            Role::Viewer => "viewer",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A role name that is not one.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("role `{0}` is unknown: use admin, operator or viewer")]
pub struct RoleError(pub String);

impl FromStr for Role {
    type Err = RoleError;
    fn from_str(text: &str) -> Result<Role, RoleError> {
        Role::ALL
            .into_iter()
            .find(|role| role.as_str() == text)
            .ok_or_else(|| RoleError(text.to_string()))
    }
}

impl fmt::Display for Permission {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Permission::Public => "public",
            Permission::Read => "read",
            Permission::Operate => "operate",
            Permission::Configure => "configure",
            Permission::Admin => "admin",
            Permission::Node => "node",
            Permission::Join => "join",
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_allow_only_what_they_say() {
        use Permission::*;
        let allowed = |role: Role| {
            [Public, Read, Operate, Configure, Admin, Node, Join]
                .into_iter()
                .filter(|p| role.allows(*p))
                .collect::<Vec<_>>()
        };
        assert_eq!(allowed(Role::Viewer), vec![Public, Read]);
        assert_eq!(allowed(Role::Operator), vec![Public, Read, Operate]);
        assert_eq!(
            allowed(Role::Admin),
            vec![Public, Read, Operate, Configure, Admin, Node]
        );
        assert_eq!(Role::least_for(Operate), Role::Operator);
        assert_eq!(Role::least_for(Read), Role::Viewer);
        assert_eq!(Role::least_for(Configure), Role::Admin);
    }

    #[test]
    fn node_certificates_reach_only_their_own_agent_calls() {
        use Permission::*;
        let node = Principal::Node("a".into());
        let all = [Public, Read, Operate, Configure, Admin, Node, Join];
        let allowed: Vec<_> = all.into_iter().filter(|p| node.allows(*p)).collect();
        assert_eq!(allowed, vec![Public, Node]);
        assert!(node.may_act_for("a") && !node.may_act_for("b"));
        let join = Principal::Join("a".into());
        let allowed: Vec<_> = all.into_iter().filter(|p| join.allows(*p)).collect();
        assert_eq!(allowed, vec![Join]);
        assert!(Principal::Token(Role::Admin).may_act_for("b"));
        assert_eq!(node.role(), None);
    }

    #[test]
    fn role_names_round_trip_and_bad_ones_say_what_to_use() {
        for role in Role::ALL {
            assert_eq!(role.to_string().parse::<Role>(), Ok(role));
        }
        let err = "root".parse::<Role>().expect_err("unknown");
        assert_eq!(
            err.to_string(),
            "role `root` is unknown: use admin, operator or viewer"
        );
    }
}
