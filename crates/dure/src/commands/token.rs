//! `dure token create|list|revoke|whoami`: API tokens with roles, and
//! one-time join tokens for agents (`create --join --node NAME`). The
//! secret of a new token is printed once, on stdout alone, so it can be
//! piped to a file.

use crate::cli::TokenCommand;
use crate::context::Context;
use crate::output::{ago, now_ms, print_json, Cell, Colour, Table};
use dure_api::{CreateToken, TokenInfo};
use dure_core::timefmt::rfc3339_seconds;

pub async fn run(ctx: &Context, command: TokenCommand) -> anyhow::Result<()> {
    match command {
        TokenCommand::Create {
            role,
            join,
            node,
            ttl,
            description,
        } => {
            let created = ctx
                .client
                .create_token(&CreateToken {
                    // A join token has no role; the controller ignores it.
                    role: role.unwrap_or(dure_core::access::Role::Viewer),
                    ttl,
                    description,
                    node: node.filter(|_| join),
                })
                .await?;
            if ctx.json() {
                return print_json(&created);
            }
            println!("{}", created.token);
            match &created.info.node {
                Some(node) => eprintln!(
                    "created join token `{}` for node `{node}` ({}): it works once, for `dure agent --node {node} --join-token-file FILE`; this is the only time its secret is shown",
                    created.info.id,
                    expiry(&created.info, now_ms())
                ),
                None => eprintln!(
                    "created token `{}` with role {} ({}): this is the only time its secret is shown",
                    created.info.id,
                    created.info.role,
                    expiry(&created.info, now_ms())
                ),
            }
            Ok(())
        }
        TokenCommand::List => {
            let tokens = ctx.client.tokens().await?;
            if ctx.json() {
                return print_json(&tokens);
            }
            if tokens.is_empty() {
                println!("no tokens but the bootstrap admin token: `dure token create --role ROLE` makes one");
                return Ok(());
            }
            token_table(&tokens, now_ms()).print();
            Ok(())
        }
        TokenCommand::Revoke { id } => {
            let revoked = ctx.client.revoke_token(&id).await?;
            if ctx.json() {
                return print_json(&revoked);
            }
            println!("revoked token `{}` (role {})", revoked.id, revoked.role);
            Ok(())
        }
        TokenCommand::Whoami => {
            let me = ctx.client.whoami().await?;
            if ctx.json() {
                return print_json(&me);
            }
            if me.description.is_empty() {
                println!("token `{}`, role {}", me.id, me.role);
            } else {
                println!("token `{}`, role {}: {}", me.id, me.role, me.description);
            }
            Ok(())
        }
    }
}

fn expiry(token: &TokenInfo, now: u64) -> String {
    match token.expires_ms {
        None => "does not expire".into(),
        Some(at) if at <= now => format!("expired {}", rfc3339_seconds(at)),
        Some(at) => format!("expires {}", rfc3339_seconds(at)),
    }
}

fn state(token: &TokenInfo, now: u64) -> Cell {
    if token.revoked_ms.is_some() {
        Cell::coloured("revoked", Colour::Red)
    } else if token.used_ms.is_some() {
        Cell::coloured("used", Colour::Gray)
    } else if token.expires_ms.is_some_and(|at| at <= now) {
        Cell::coloured("expired", Colour::Gray)
    } else {
        Cell::coloured("active", Colour::Green)
    }
}

fn token_table(tokens: &[TokenInfo], now: u64) -> Table {
    let mut table = Table::new(&[
        "ID",
        "ROLE",
        "STATE",
        "CREATED",
        "EXPIRES",
        "CREATED BY",
        "DESCRIPTION",
    ]);
    for token in tokens {
        table.row(vec![
            token.id.clone().into(),
            token
                .node
                .as_ref()
                .map_or(token.role.to_string(), |node| format!("join:{node}"))
                .into(),
            state(token, now),
            ago(token.created_ms, now).into(),
            token
                .expires_ms
                .map_or("never".to_string(), rfc3339_seconds)
                .into(),
            token.created_by.clone().into(),
            token.description.clone().into(),
        ]);
    }
    table
}
