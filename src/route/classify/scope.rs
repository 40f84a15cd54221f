//! Which names in FROM items are CTEs rather than tables, by PostgreSQL's scoping: a query sees
//! its own CTEs and those of the queries around it; a CTE's body sees only the CTEs before it
//! (all of them, itself included, under WITH RECURSIVE). So in
//! `WITH accounts AS (SELECT * FROM accounts) SELECT * FROM accounts` the inner `accounts` is
//! the table. A table taken for a CTE would be missing from `tables_read`, and a result cached
//! on it never invalidated; this keeps that from happening.

use sqlparser::ast::{ObjectName, Query};

use super::names;

#[derive(Default)]
pub(super) struct CteScopes {
    /// CTE names visible in each query being walked, innermost last.
    frames: Vec<Vec<String>>,
    /// CTE bodies not entered yet (known by address: the walk visits the very same nodes),
    /// with the names visible inside each.
    bodies: Vec<(*const Query, Vec<String>)>,
}

impl CteScopes {
    /// Called as the walk enters `query`, before its WITH clause and body.
    pub fn enter(&mut self, query: &Query) {
        let outer = match self
            .bodies
            .iter()
            .position(|(q, _)| std::ptr::eq(*q, query))
        {
            Some(i) => self.bodies.swap_remove(i).1,
            None => self.frames.last().cloned().unwrap_or_default(),
        };
        let mut visible = outer.clone();
        if let Some(with) = &query.with {
            let own: Vec<String> = with
                .cte_tables
                .iter()
                .map(|cte| names::identifier(&cte.alias.name))
                .collect();
            for (i, cte) in with.cte_tables.iter().enumerate() {
                let before = if with.recursive { &own[..] } else { &own[..i] };
                let mut inside = outer.clone();
                inside.extend_from_slice(before);
                self.bodies.push((&*cte.query, inside));
            }
            visible.extend(own);
        }
        self.frames.push(visible);
    }

    /// Called as the walk leaves a query.
    pub fn leave(&mut self) {
        self.frames.pop();
    }

    /// Whether `name`, in a FROM item of the current query, names a CTE.
    pub fn is_cte(&self, name: &ObjectName) -> bool {
        let ([part], Some(visible)) = (name.0.as_slice(), self.frames.last()) else {
            return false;
        };
        part.as_ident()
            .map(names::identifier)
            .is_some_and(|name| visible.contains(&name))
    }
}
