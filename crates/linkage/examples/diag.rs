use std::collections::HashMap;
use kinlink_linkage::compare::compare;
use kinlink_linkage::model::Frequencies;
use kinlink_linkage::{Model, PersonRecord, batch, synth};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let model = match std::env::args().nth(1) { Some(p) => Model::from_json(&std::fs::read_to_string(p)?)?, None => Model::shipped()? };
    let data = synth::generate(10_000, 7);
    let records: Vec<PersonRecord> = data.iter().map(|s| s.record.clone()).collect();
    let model = if std::env::var("TRAIN").is_ok() { let t = std::time::Instant::now(); let m = kinlink_linkage::train::train(&model, &records, "em", 3); eprintln!("trained in {:.1}s", t.elapsed().as_secs_f64()); std::fs::write("/tmp/diag/trained.json", serde_json::to_string_pretty(&m)?)?; m } else { model };
    let truth: HashMap<&str, &str> = data.iter().map(|s| (s.record.id.as_str(), s.true_person.as_str())).collect();
    let by_id: HashMap<&str, &PersonRecord> = records.iter().map(|r| (r.id.as_str(), r)).collect();
    let freq = Frequencies::from_records(&records);
    let links = batch::link(&model, &records, None, model.lower);
    let mut fp: HashMap<String, usize> = HashMap::new();
    let mut rel: HashMap<String, usize> = HashMap::new();
    let mut examples: HashMap<String, Vec<String>> = HashMap::new();
    for l in links.iter().filter(|l| l.match_probability >= model.upper) {
        let (ta, tb) = (truth[l.id_l.as_str()], truth[l.id_r.as_str()]);
        if ta == tb { continue; }
        let ha = ta.split('-').next().unwrap_or("");
        let hb = tb.split('-').next().unwrap_or("");
        let r = if ha != hb { "other household".to_string() } else {
            let mut v = [ta.split('-').nth(1).unwrap_or("").trim_end_matches(char::is_numeric), tb.split('-').nth(1).unwrap_or("").trim_end_matches(char::is_numeric)]; v.sort(); v.join("/") };
        *rel.entry(r.clone()).or_default() += 1;
        let (a, b) = (by_id[l.id_l.as_str()], by_id[l.id_r.as_str()]);
        let c = compare(a, b);
        let key = format!("{r} {:?}", c.iter().map(|x| x.unwrap_or("-")).collect::<Vec<_>>());
        *fp.entry(key.clone()).or_default() += 1;
        let e = examples.entry(key).or_default();
        if e.len() < 2 { e.push(format!("{:?} {:?} {:?} {} {} | {:?} {:?} {:?} {} {} p={:.3}", a.given, a.family, a.dob, a.sex, a.postcode, b.given, b.family, b.dob, b.sex, b.postcode, l.match_probability)); }
    }
    { let auto: Vec<_> = links.iter().filter(|l| l.match_probability >= model.upper).collect();
      let tp = auto.iter().filter(|l| truth[l.id_l.as_str()] == truth[l.id_r.as_str()]).count();
      println!("PRECISION {:.3} RECALL {:.3} auto {} review {}", tp as f64 / auto.len() as f64, tp as f64 / 32594.0, auto.len(), links.len() - auto.len()); }
    println!("FP by relationship: {rel:?}");
    let mut v: Vec<_> = fp.into_iter().collect(); v.sort_by(|a, b| b.1.cmp(&a.1));
    for (k, n) in v.iter().take(25) { println!("{n:6} {k}"); for e in &examples[k] { println!("        {e}"); } }
    // false negatives: true pairs below upper
    let mut by_person: HashMap<&str, Vec<&PersonRecord>> = HashMap::new();
    for s in &data { by_person.entry(s.true_person.as_str()).or_default().push(&s.record); }
    let mut fnp: HashMap<String, usize> = HashMap::new();
    let mut total = 0; let mut missed = 0;
    for rs in by_person.values() { for i in 0..rs.len() { for j in i+1..rs.len() {
        total += 1;
        let s = model.score(rs[i], rs[j], Some(&freq));
        if s.probability < model.upper { missed += 1;
            let c = compare(rs[i], rs[j]);
            *fnp.entry(format!("{:?}", c.iter().map(|x| x.unwrap_or("-")).collect::<Vec<_>>())).or_default() += 1; }
    }}}
    // oracle m and u
    use rand::{Rng, SeedableRng};
    let mut rng = rand::rngs::StdRng::seed_from_u64(1);
    let mut mc: Vec<HashMap<&str, f64>> = vec![HashMap::new(); 6];
    let mut uc: Vec<HashMap<&str, f64>> = vec![HashMap::new(); 6];
    for rs in by_person.values() { for i in 0..rs.len() { for j in i+1..rs.len() {
        for (f, l) in compare(rs[i], rs[j]).iter().enumerate() { if let Some(l) = l { *mc[f].entry(l).or_default() += 1.0; } } } } }
    for _ in 0..400_000 { let a = &records[rng.random_range(0..records.len())]; let b = &records[rng.random_range(0..records.len())];
        for (f, l) in compare(a, b).iter().enumerate() { if let Some(l) = l { *uc[f].entry(l).or_default() += 1.0; } } }
    for f in 0..6 { let mt: f64 = mc[f].values().sum(); let ut: f64 = uc[f].values().sum();
        let mut ls: Vec<&str> = mc[f].keys().chain(uc[f].keys()).copied().collect(); ls.sort(); ls.dedup();
        println!("{}", kinlink_linkage::compare::FIELDS[f]);
        for l in ls { let m = mc[f].get(l).copied().unwrap_or(0.0)/mt; let u = uc[f].get(l).copied().unwrap_or(0.0)/ut; println!("   {l:16} m {m:.4} u {u:.5} w {:.2}", (m.max(1e-6)/u.max(1e-7)).log2()); } }
    let n = records.len() as f64; println!("random-pair prior {:.3e}", total as f64 / (n*(n-1.0)/2.0));
    println!("true pairs {total}, below upper (ignoring blocking) {missed}");
    let mut v: Vec<_> = fnp.into_iter().collect(); v.sort_by(|a, b| b.1.cmp(&a.1));
    for (k, n) in v.iter().take(25) { println!("{n:6} {k}"); }
    Ok(())
}
