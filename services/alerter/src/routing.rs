//! Pure routing: which bodies must hear about a child. The authority where the child lives
//! and the one where the child is found are both responsible, so a child can route to two.
//! When nothing resolves the child goes to triage: a person routes it; nothing is dropped.

use kinlink_proto::v1::{self, LocationRole, RoutingBasis};

use crate::authorities::{AuthorityRegistry, ChildrensServices};

/// One routing decision for one child.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    /// None: triage.
    pub authority: Option<ChildrensServices>,
    pub basis: RoutingBasis,
}

/// Routes a child from its locations. Lives comes before found, so when both resolve to one
/// body the single alert says "lives".
pub fn route_child(locations: &[v1::Location], registry: &AuthorityRegistry) -> Vec<Route> {
    let mut ordered: Vec<&v1::Location> = locations.iter().collect();
    ordered.sort_by_key(|l| {
        if l.role == LocationRole::Lives as i32 {
            0
        } else {
            1
        }
    });
    let mut routes: Vec<Route> = Vec::new();
    for location in ordered {
        let basis = if location.role == LocationRole::Found as i32 {
            RoutingBasis::Found
        } else {
            RoutingBasis::Lives
        };
        // Postcode lookup arrives with the shipped postcode table; until then only an
        // explicit GSS code resolves.
        if location.authority_code.is_empty() {
            continue;
        }
        let Ok(body) = registry.childrens_services(&location.authority_code) else {
            continue;
        };
        let already = routes.iter().any(|r| {
            r.authority
                .as_ref()
                .is_some_and(|a| a.gss_code == body.gss_code)
        });
        if !already {
            routes.push(Route {
                authority: Some(body),
                basis,
            });
        }
    }
    if routes.is_empty() {
        routes.push(Route {
            authority: None,
            basis: RoutingBasis::Triage,
        });
    }
    routes
}

#[cfg(test)]
mod tests {
    use super::*;

    fn location(role: LocationRole, code: &str) -> v1::Location {
        v1::Location {
            role: role as i32,
            authority_code: code.into(),
            ..Default::default()
        }
    }

    fn codes(routes: &[Route]) -> Vec<(Option<String>, RoutingBasis)> {
        routes
            .iter()
            .map(|r| (r.authority.as_ref().map(|a| a.gss_code.clone()), r.basis))
            .collect()
    }

    #[test]
    fn lives_and_found_in_different_authorities_alert_both()
    -> Result<(), crate::authorities::RegistryError> {
        let registry = AuthorityRegistry::shipped()?;
        let routes = route_child(
            &[
                location(LocationRole::Found, "E09000033"),
                location(LocationRole::Lives, "E07000105"),
            ],
            &registry,
        );
        assert_eq!(
            codes(&routes),
            [
                (Some("E10000016".into()), RoutingBasis::Lives),
                (Some("E09000033".into()), RoutingBasis::Found)
            ]
        );
        Ok(())
    }

    #[test]
    fn same_body_twice_is_one_route_and_nothing_resolvable_is_triage()
    -> Result<(), crate::authorities::RegistryError> {
        let registry = AuthorityRegistry::shipped()?;
        // Ashford and Kent: both route to Kent County Council.
        let routes = route_child(
            &[
                location(LocationRole::Lives, "E07000105"),
                location(LocationRole::Found, "E10000016"),
            ],
            &registry,
        );
        assert_eq!(
            codes(&routes),
            [(Some("E10000016".into()), RoutingBasis::Lives)]
        );
        let overseas = v1::Location {
            role: LocationRole::Found as i32,
            overseas: true,
            ..Default::default()
        };
        assert_eq!(
            codes(&route_child(&[overseas], &registry)),
            [(None, RoutingBasis::Triage)]
        );
        assert_eq!(
            codes(&route_child(&[], &registry)),
            [(None, RoutingBasis::Triage)]
        );
        Ok(())
    }
}
