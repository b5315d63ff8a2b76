//! Pure routing: which bodies must hear about a child.
//!
//! The authority where the child lives and the one where the child is found are both
//! responsible, so a child can route to two; a looked-after child's placing authority is
//! responsible too. A location resolves through its explicit GSS code if given, otherwise its
//! postcode. Whatever cannot be resolved to exactly one body goes to triage with the reason
//! and any candidate bodies: a person routes it, nothing is dropped, and nothing is guessed.

pub mod authorities;
pub mod postcode;
pub mod postcode_table;

use std::sync::Arc;

use kinlink_proto::v1::{self, LocationRole, RoutingBasis};

use crate::Error;
use crate::routing::authorities::{AuthorityRegistry, ChildrensServices, Unresolved};
use crate::routing::postcode::{PostcodeError, PostcodeQuery};
use crate::routing::postcode_table::{PostcodeLookup, PostcodeTable};

/// Why a location went to triage. Codes are stable: they appear in alerts and the triage
/// queue. None carries the postcode itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TriageReason {
    NoLocation,
    Overseas,
    NoFixedAbode,
    InvalidPostcode(PostcodeError),
    UnknownPostcode,
    AmbiguousPostcode,
    UnknownAuthority,
    SeveralBodies(&'static str),
    NotChildrensServices,
}

impl TriageReason {
    pub fn code(&self) -> &'static str {
        match self {
            TriageReason::NoLocation => "no_location",
            TriageReason::Overseas => "overseas",
            TriageReason::NoFixedAbode => "no_fixed_abode",
            TriageReason::InvalidPostcode(_) => "invalid_postcode",
            TriageReason::UnknownPostcode => "unknown_postcode",
            TriageReason::AmbiguousPostcode => "ambiguous_postcode",
            TriageReason::UnknownAuthority => "unknown_authority",
            TriageReason::SeveralBodies(_) => "several_bodies",
            TriageReason::NotChildrensServices => "not_childrens_services",
        }
    }
}

impl std::fmt::Display for TriageReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TriageReason::InvalidPostcode(error) => write!(f, "invalid postcode: {error}"),
            TriageReason::SeveralBodies(why) => write!(f, "several possible bodies: {why}"),
            other => f.write_str(other.code()),
        }
    }
}

/// One location resolved, or not.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Resolution {
    Resolved {
        body: ChildrensServices,
        /// The local authority district on the way (from the postcode or the code given).
        district: String,
        /// The postcode is terminated; its last district was used.
        terminated_postcode: bool,
    },
    Unresolved {
        reason: TriageReason,
        candidates: Vec<ChildrensServices>,
    },
}

/// Resolves codes and postcodes to children's-services bodies with the shipped data.
#[derive(Debug, Clone)]
pub struct AuthorityResolver {
    registry: Arc<AuthorityRegistry>,
    postcodes: &'static PostcodeTable,
    version: String,
}

impl AuthorityResolver {
    /// The register and postcode table shipped with kinlink.
    pub fn shipped() -> Result<Self, Error> {
        let registry = Arc::new(AuthorityRegistry::shipped()?);
        let postcodes = PostcodeTable::shipped()?;
        let version = format!("{};{}", registry.version(), postcodes.version());
        Ok(Self {
            registry,
            postcodes,
            version,
        })
    }

    /// Data versions recorded on every routing decision.
    pub fn version(&self) -> &str {
        &self.version
    }

    pub fn postcodes(&self) -> &PostcodeTable {
        self.postcodes
    }

    /// Resolves a GSS code of a local authority.
    pub fn resolve_code(&self, gss: &str) -> Resolution {
        match self.registry.childrens_services(gss) {
            Ok(body) => Resolution::Resolved {
                body,
                district: gss.to_owned(),
                terminated_postcode: false,
            },
            Err(unresolved) => Self::unresolved(unresolved),
        }
    }

    /// Resolves a full or partial postcode.
    pub fn resolve_postcode(&self, postcode: &str) -> Resolution {
        let query = match PostcodeQuery::parse(postcode) {
            Ok(query) => query,
            Err(error) => return triage(TriageReason::InvalidPostcode(error)),
        };
        match self.postcodes.lookup(&query) {
            PostcodeLookup::Found {
                district,
                terminated,
            } => match self.resolve_code(district) {
                Resolution::Resolved { body, district, .. } => Resolution::Resolved {
                    body,
                    district,
                    terminated_postcode: terminated,
                },
                unresolved => unresolved,
            },
            PostcodeLookup::Ambiguous { districts } => {
                let mut candidates: Vec<ChildrensServices> = Vec::new();
                for district in districts {
                    if let Resolution::Resolved { body, .. } = self.resolve_code(district)
                        && !candidates.iter().any(|c| c.gss_code == body.gss_code)
                    {
                        candidates.push(body);
                    }
                }
                // Districts of one county (or one trust) still make one body.
                match <[ChildrensServices; 1]>::try_from(candidates) {
                    Ok([body]) => Resolution::Resolved {
                        district: String::new(),
                        body,
                        terminated_postcode: false,
                    },
                    Err(candidates) => Resolution::Unresolved {
                        reason: TriageReason::AmbiguousPostcode,
                        candidates,
                    },
                }
            }
            PostcodeLookup::NotFound => triage(TriageReason::UnknownPostcode),
        }
    }

    /// Resolves one location of a child: its explicit code first, then its postcode.
    pub fn resolve_location(&self, location: &v1::Location) -> Resolution {
        if !location.authority_code.is_empty() {
            self.resolve_code(&location.authority_code)
        } else if !location.postcode.is_empty() {
            self.resolve_postcode(&location.postcode)
        } else if location.overseas {
            triage(TriageReason::Overseas)
        } else if location.no_fixed_abode {
            triage(TriageReason::NoFixedAbode)
        } else {
            triage(TriageReason::NoLocation)
        }
    }

    fn unresolved(unresolved: Unresolved) -> Resolution {
        match unresolved {
            Unresolved::UnknownCode => triage(TriageReason::UnknownAuthority),
            Unresolved::NotChildrensServices => triage(TriageReason::NotChildrensServices),
            Unresolved::SeveralBodies { reason, candidates } => Resolution::Unresolved {
                reason: TriageReason::SeveralBodies(reason),
                candidates,
            },
        }
    }
}

fn triage(reason: TriageReason) -> Resolution {
    Resolution::Unresolved {
        reason,
        candidates: Vec::new(),
    }
}

/// Where one child's alert goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    Body {
        body: ChildrensServices,
        terminated_postcode: bool,
    },
    Triage {
        reasons: Vec<TriageReason>,
        candidates: Vec<ChildrensServices>,
    },
}

/// One routing decision for one child.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    pub target: Target,
    pub basis: RoutingBasis,
}

impl Route {
    pub fn authority(&self) -> Option<&ChildrensServices> {
        match &self.target {
            Target::Body { body, .. } => Some(body),
            Target::Triage { .. } => None,
        }
    }
}

/// Routes a child from its locations: one route per distinct body (lives before found before
/// placing authority, so a body reached twice keeps the first basis), plus one triage route
/// when a location that named a place could not be resolved, or when nothing resolved.
pub fn route_child(locations: &[v1::Location], resolver: &AuthorityResolver) -> Vec<Route> {
    let mut ordered: Vec<&v1::Location> = locations.iter().collect();
    ordered.sort_by_key(|l| basis_of(l.role) as i32);
    let mut routes: Vec<Route> = Vec::new();
    let mut reasons = Vec::new();
    let mut candidates: Vec<ChildrensServices> = Vec::new();
    let mut named_place_failed = false;
    for location in ordered {
        let basis = basis_of(location.role);
        match resolver.resolve_location(location) {
            Resolution::Resolved {
                body,
                terminated_postcode,
                ..
            } => {
                if !routes
                    .iter()
                    .any(|r| r.authority().is_some_and(|a| a.gss_code == body.gss_code))
                {
                    routes.push(Route {
                        target: Target::Body {
                            body,
                            terminated_postcode,
                        },
                        basis,
                    });
                }
            }
            Resolution::Unresolved {
                reason,
                candidates: more,
            } => {
                named_place_failed |=
                    !location.postcode.is_empty() || !location.authority_code.is_empty();
                if !reasons.contains(&reason) {
                    reasons.push(reason);
                }
                for candidate in more {
                    if !candidates.iter().any(|c| c.gss_code == candidate.gss_code) {
                        candidates.push(candidate);
                    }
                }
            }
        }
    }
    if locations.is_empty() {
        reasons.push(TriageReason::NoLocation);
    }
    if routes.is_empty() || named_place_failed {
        routes.push(Route {
            target: Target::Triage {
                reasons,
                candidates,
            },
            basis: RoutingBasis::Triage,
        });
    }
    routes
}

fn basis_of(role: i32) -> RoutingBasis {
    match LocationRole::try_from(role).unwrap_or(LocationRole::Unspecified) {
        LocationRole::Found => RoutingBasis::Found,
        LocationRole::PlacingAuthority => RoutingBasis::PlacingAuthority,
        LocationRole::Lives | LocationRole::Unspecified => RoutingBasis::Lives,
    }
}
