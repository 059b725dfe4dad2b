//! `examples/library.rs` (the README's "Use it as a library") run as a test: training lowers
//! the loss below what the characters' frequencies alone give, and the profile it reads has the
//! shape the analysis defines.

#[allow(dead_code)]
#[path = "../examples/library.rs"]
mod library;

#[test]
fn the_library_example_trains_and_reads_a_profile() {
    let o = library::run(300).unwrap();
    // Before training the model is close to uniform: ln V (PyTorch's default init).
    let uniform = (o.vocab as f64).ln();
    assert!(
        (o.loss_before - uniform).abs() < 0.05 * uniform,
        "initial loss {} vs ln V = {uniform}",
        o.loss_before
    );
    // The text's unigram entropy: the best loss without memory of earlier characters. The
    // couplets are predictable from context, so the trained LSTM must beat it clearly.
    let text = library::text();
    let mut counts = std::collections::HashMap::new();
    for c in text.chars() {
        *counts.entry(c).or_insert(0usize) += 1;
    }
    let n = text.chars().count() as f64;
    let unigram: f64 = counts
        .values()
        .map(|&k| -(k as f64 / n) * (k as f64 / n).ln())
        .sum();
    assert!(
        o.loss_after < 0.5 * unigram,
        "trained loss {} is not below half the unigram entropy {unigram}",
        o.loss_after
    );
    // R(0) = 1 by definition; distance l has B (T - l) pairs (i, b).
    assert_eq!(o.profile[0].0, 0);
    assert!(
        (o.profile[0].1 - 1.0).abs() < 1e-12,
        "R(0) = {}",
        o.profile[0].1
    );
    for &(l, _, count) in &o.profile {
        assert_eq!(count, o.windows * (o.steps - l), "pairs at distance {l}");
    }
    assert_eq!(o.profile.len(), o.steps);
}
