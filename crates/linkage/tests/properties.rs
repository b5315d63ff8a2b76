//! Properties of scoring and batch linking that must hold for any input, checked on generated
//! records with the shipped model.

use std::collections::BTreeSet;

use kinlink_linkage::compare::FIELDS;
use kinlink_linkage::{Dob, Model, PersonRecord, batch, synth};
use proptest::prelude::*;

/// Records from small pools, so generated pairs agree, nearly agree and disagree on every
/// field often enough to exercise each comparison level.
fn record() -> impl Strategy<Value = PersonRecord> {
    let names = [
        "Besa", "Bessa", "Hoxha", "Hoxhaj", "Lan", "Nguyen", "Nguyễn", "Mohammed", "",
    ];
    let dob = prop_oneof![
        Just(None),
        (
            2005..2020i32,
            proptest::option::of(1..=12u32),
            1..=28u32,
            any::<bool>()
        )
            .prop_map(|(year, month, day, estimated)| Some(Dob {
                year,
                month,
                day: month.map(|_| day),
                estimated,
            })),
    ];
    (
        proptest::sample::select(names.to_vec()),
        proptest::sample::select(names.to_vec()),
        dob,
        proptest::sample::select(vec!["f", "m", ""]),
        proptest::sample::select(vec!["CT1 2RR", "CT1 2AB", "CT1 9ZZ", "B1 1BB", ""]),
        proptest::sample::select(vec!["AL", "VN", ""]),
    )
        .prop_map(
            |(given, family, dob, sex, postcode, nationality)| PersonRecord {
                id: String::new(),
                given: given.into(),
                family: family.into(),
                aliases: Vec::new(),
                dob,
                sex: sex.into(),
                postcode: postcode.into(),
                nationality: nationality.into(),
            },
        )
}

fn cluster_sets(records: &[PersonRecord], model: &Model) -> BTreeSet<BTreeSet<String>> {
    let links = batch::link(model, records, None, model.upper);
    let ids: Vec<String> = records.iter().map(|r| r.id.clone()).collect();
    let mut by_cluster: std::collections::BTreeMap<String, BTreeSet<String>> =
        std::collections::BTreeMap::new();
    for (id, cluster) in batch::clusters(&ids, &links) {
        by_cluster.entry(cluster).or_default().insert(id);
    }
    by_cluster.into_values().collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Without term frequencies, which take the first record's name, a pair scores the same
    /// whichever record comes first.
    #[test]
    fn scoring_is_symmetric(a in record(), b in record()) {
        let model = Model::shipped().map_err(|e| TestCaseError::fail(e.to_string()))?;
        let (ab, ba) = (model.score(&a, &b, None), model.score(&b, &a, None));
        prop_assert_eq!(ab.band, ba.band);
        prop_assert!((ab.probability - ba.probability).abs() < 1e-12);
    }

    /// Leaving a field out removes exactly that field's evidence and nothing else, so an
    /// unknown value can never argue for or against a match.
    #[test]
    fn a_missing_value_removes_only_its_own_evidence(
        a in record(),
        b in record(),
        field in 0..FIELDS.len(),
    ) {
        let model = Model::shipped().map_err(|e| TestCaseError::fail(e.to_string()))?;
        let full = model.score(&a, &b, None);
        // A swap of given and family name is one judgement over both fields.
        prop_assume!(!full.evidence.iter().any(|e| e.level == "swapped"));
        let mut blank = a.clone();
        match FIELDS[field] {
            "given_name" => blank.given.clear(),
            "family_name" => blank.family.clear(),
            "date_of_birth" => blank.dob = None,
            "sex" => blank.sex.clear(),
            "nationality" => blank.nationality.clear(),
            _ => blank.postcode.clear(),
        }
        let partial = model.score(&blank, &b, None);
        let removed: f64 = full
            .evidence
            .iter()
            .filter(|e| e.field == FIELDS[field])
            .map(|e| e.weight)
            .sum();
        prop_assert!((full.weight - removed - partial.weight).abs() < 1e-9);
        prop_assert!(partial.evidence.iter().all(|e| e.field != FIELDS[field]));
    }

    /// Clusters depend on the records, not on the order they arrive in.
    #[test]
    fn clusters_do_not_depend_on_input_order(
        (records, shuffled) in any::<u64>().prop_flat_map(|seed| {
            let records: Vec<PersonRecord> =
                synth::generate(25, seed).into_iter().map(|s| s.record).collect();
            (Just(records.clone()), Just(records).prop_shuffle())
        }),
    ) {
        let model = Model::shipped().map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!(cluster_sets(&records, &model), cluster_sets(&shuffled, &model));
    }
}
