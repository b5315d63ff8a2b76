#![allow(clippy::panic)] // Test helpers fail the test on broken fixtures.
//! Routing real postcodes from every nation through the shipped ONSPD-derived table and the
//! authority register. Postcodes are listed with their sources in `data/test-postcodes.md`.

use kinlink_domain::routing::{AuthorityResolver, Resolution, TriageReason};

fn resolver() -> AuthorityResolver {
    match AuthorityResolver::shipped() {
        Ok(resolver) => resolver,
        Err(error) => panic!("shipped reference data must load: {error}"),
    }
}

#[test]
fn postcodes_from_every_nation_reach_their_childrens_services_body() {
    let resolver = resolver();
    let cases = [
        // (postcode, expected body, what it covers)
        ("BS1 5TR", "E06000023", "unitary: Bristol"),
        ("B1 1BB", "E08000025", "metropolitan borough: Birmingham"),
        (
            "S1 2HH",
            "E08000019",
            "metropolitan borough recoded in 2024: Sheffield",
        ),
        ("SW1A 2AA", "E09000033", "London borough: Westminster"),
        ("EC2V 7HH", "E09000001", "City of London"),
        (
            "CB2 1TN",
            "E10000003",
            "two-tier: Cambridge -> Cambridgeshire",
        ),
        ("CT1 2RR", "E10000016", "two-tier: Canterbury -> Kent"),
        ("OX1 1BX", "E10000025", "two-tier: Oxford -> Oxfordshire"),
        ("NR2 1NH", "E10000020", "two-tier: Norwich -> Norfolk"),
        ("CA3 8QG", "E06000063", "2023 reorganisation: Cumberland"),
        (
            "LA9 4RQ",
            "E06000064",
            "2023 reorganisation: Westmorland and Furness",
        ),
        (
            "HG1 2AE",
            "E06000065",
            "2023 reorganisation: North Yorkshire",
        ),
        ("TA1 4DY", "E06000066", "2023 reorganisation: Somerset"),
        ("CF10 4UW", "W06000015", "Wales: Cardiff"),
        ("EH1 1YJ", "S12000036", "Scotland: Edinburgh"),
        (
            "HS1 2BW",
            "S12000013",
            "Scottish island authority: Na h-Eileanan Siar",
        ),
        (
            "ZE1 0LZ",
            "S12000027",
            "Scottish island authority: Shetland",
        ),
        ("BT1 1AA", "HSCT-BELFAST", "Northern Ireland: Belfast"),
        (
            "BT41 1AA",
            "HSCT-NORTHERN",
            "Northern Ireland: Antrim and Newtownabbey",
        ),
        (
            "BT61 0AZ",
            "HSCT-SOUTHERN",
            "Northern Ireland: Armagh City, Banbridge and Craigavon",
        ),
        (
            "BT48 6DQ",
            "HSCT-WESTERN",
            "Northern Ireland: Derry City and Strabane",
        ),
        (
            "BT20 3AA",
            "HSCT-SOUTH-EASTERN",
            "Northern Ireland: Ards and North Down",
        ),
        ("b1 1bb", "E08000025", "lower case, as typed"),
        ("SW1A2AA", "E09000033", "no space"),
        ("B1 1", "E08000025", "a sector in one authority"),
        ("B1", "E08000025", "an outward code in one authority"),
        (
            "AB1 0AA",
            "S12000033",
            "a postcode Royal Mail withdrew: its last district",
        ),
    ];
    for (postcode, expected, what) in cases {
        match resolver.resolve_postcode(postcode) {
            Resolution::Resolved { body, .. } => {
                assert_eq!(body.gss_code, expected, "{postcode} ({what})")
            }
            other => panic!("{postcode} ({what}) did not resolve: {other:?}"),
        }
    }
}

#[test]
fn northern_ireland_districts_across_two_trusts_go_to_triage_naming_both() {
    let resolver = resolver();
    let cases = [
        ("BT52 1AA", ["HSCT-NORTHERN", "HSCT-WESTERN"]),
        ("BT28 1AA", ["HSCT-SOUTH-EASTERN", "HSCT-BELFAST"]),
        ("BT80 8DT", ["HSCT-NORTHERN", "HSCT-SOUTHERN"]),
        ("BT30 6GQ", ["HSCT-SOUTHERN", "HSCT-SOUTH-EASTERN"]),
    ];
    for (postcode, trusts) in cases {
        match resolver.resolve_postcode(postcode) {
            Resolution::Unresolved {
                reason: TriageReason::SeveralBodies(_),
                candidates,
            } => {
                let codes: Vec<_> = candidates.iter().map(|c| c.gss_code.as_str()).collect();
                assert_eq!(codes, trusts, "{postcode}");
            }
            other => panic!("{postcode} should need triage: {other:?}"),
        }
    }
}

#[test]
fn partial_unknown_and_invalid_postcodes_are_never_guessed() {
    let resolver = resolver();
    let reason = |postcode: &str| match resolver.resolve_postcode(postcode) {
        Resolution::Unresolved { reason, candidates } => (reason.code(), candidates.len()),
        Resolution::Resolved { body, .. } => panic!("{postcode} resolved to {}", body.gss_code),
    };
    // A sector split between Bristol and South Gloucestershire, and an outward code spanning
    // seven districts in four bodies: no guess, candidates named.
    assert_eq!(reason("BS16 1"), ("ambiguous_postcode", 2));
    assert_eq!(reason("DE7").0, "ambiguous_postcode");
    // A sector across the England/Scotland border.
    assert_eq!(reason("CA6 5"), ("ambiguous_postcode", 2));
    // Not in the directory (a postcode with no district in ONSPD, and a made-up one), and malformed.
    assert_eq!(reason("YO1 0AA").0, "unknown_postcode");
    assert_eq!(reason("ZZ99 9ZZ").0, "unknown_postcode");
    assert_eq!(reason("SW1A-2AA").0, "invalid_postcode");
    assert_eq!(reason("12345").0, "invalid_postcode");
}

#[test]
fn every_district_in_the_postcode_table_has_a_body_or_a_named_choice() {
    let resolver = resolver();
    let table = resolver.postcodes();
    assert!(
        table.len() > 2_600_000,
        "table holds {} postcodes",
        table.len()
    );
    for district in table.districts() {
        match resolver.resolve_code(district) {
            Resolution::Resolved { .. } => {}
            Resolution::Unresolved {
                reason: TriageReason::SeveralBodies(_),
                candidates,
            } if candidates.len() == 2 => {}
            other => panic!("district {district} has no body: {other:?}"),
        }
    }
}

#[test]
fn every_sector_of_the_table_is_reachable_and_legacy_npt_rows_are_dropped() {
    let table = match kinlink_domain::routing::postcode_table::PostcodeTable::shipped() {
        Ok(table) => table,
        Err(error) => panic!("{error}"),
    };
    // The ten legacy `NPT` sectors (Newport pseudo-postcodes) are the only rows no query can
    // reach; they are left out rather than kept as dead data.
    assert_eq!(table.unreachable_sectors(), 10);
    assert!(matches!(
        resolver().resolve_postcode("NPT 0AD"),
        Resolution::Unresolved {
            reason: TriageReason::InvalidPostcode(_),
            ..
        }
    ));
}
