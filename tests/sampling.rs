//! Sampling draws tokens with the frequencies it promises: for a known logit vector `z`,
//! temperature `T` and top-k `K`, token `i` among the `K` largest logits comes with probability
//!
//! ```text
//! p_i = exp(z_i / T) / sum_{j in top K} exp(z_j / T)
//! ```
//! and every other token never. 200,000 seeded draws per case are compared with `p` by
//! Pearson's chi-square statistic, which must stay below the `1 - 1e-6` quantile of the
//! chi-square distribution with `K' - 1` degrees of freedom (`K'` tokens allowed; the
//! Wilson-Hilferty approximation of the quantile, within a few percent at these degrees).

use rand::rngs::StdRng;
use rand::SeedableRng;
use rnnscope::train::eval::draw;
use rnnscope::train::SampleOptions;

const LOGITS: [f32; 7] = [1.0, 2.5, -0.5, 0.0, 2.0, -2.0, 0.7];
const DRAWS: usize = 200_000;

/// The `1 - 1e-6` quantile of chi-square with `df` degrees of freedom (Wilson-Hilferty).
fn chi2_quantile(df: usize) -> f64 {
    let z = 4.753; // standard normal 1 - 1e-6 quantile
    let d = df as f64;
    let c = 2.0 / (9.0 * d);
    d * (1.0 - c + z * c.sqrt()).powi(3)
}

/// Counts of each token over `DRAWS` draws.
fn counts(opts: &SampleOptions, seed: u64) -> Vec<usize> {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut c = vec![0; LOGITS.len()];
    for _ in 0..DRAWS {
        c[draw(&LOGITS, opts, &mut rng) as usize] += 1;
    }
    c
}

/// The tempered softmax over the `top_k` largest logits (all when 0), minus `banned`.
fn expected(temperature: f64, top_k: usize, banned: &[u32]) -> Vec<f64> {
    let mut order: Vec<usize> = (0..LOGITS.len())
        .filter(|i| !banned.contains(&(*i as u32)))
        .collect();
    order.sort_by(|&a, &b| LOGITS[b].total_cmp(&LOGITS[a]));
    if top_k > 0 {
        order.truncate(top_k);
    }
    let mut p = vec![0.0; LOGITS.len()];
    for &i in &order {
        p[i] = (LOGITS[i] as f64 / temperature).exp();
    }
    let total: f64 = p.iter().sum();
    p.iter().map(|x| x / total).collect()
}

#[test]
fn frequencies_follow_the_tempered_softmax_and_top_k() {
    let mut seed = 0;
    for (temperature, top_k, banned) in [
        (1.0, 0, vec![]),
        (0.5, 0, vec![]),
        (2.0, 0, vec![]),
        (1.0, 3, vec![]),
        (0.7, 4, vec![]),
        (1.5, 2, vec![]),
        (1.0, 3, vec![1]),
    ] {
        seed += 1;
        let opts = SampleOptions {
            temperature,
            top_k,
            banned: banned.clone(),
        };
        let got = counts(&opts, seed);
        let want = expected(temperature, top_k, &banned);
        let what = format!("T = {temperature}, top-k {top_k}, banned {banned:?}");
        let mut chi2 = 0.0;
        let mut allowed = 0;
        for (i, (&o, &p)) in got.iter().zip(&want).enumerate() {
            if p == 0.0 {
                assert_eq!(
                    o, 0,
                    "{what}: token {i} is excluded but was drawn {o} times"
                );
            } else {
                allowed += 1;
                let e = p * DRAWS as f64;
                chi2 += (o as f64 - e).powi(2) / e;
            }
        }
        let bound = chi2_quantile(allowed - 1);
        assert!(
            chi2 <= bound,
            "{what}: chi-square {chi2:.1} > {bound:.1} ({allowed} tokens); counts {got:?}, expected {:?}",
            want.iter().map(|p| (p * DRAWS as f64).round()).collect::<Vec<_>>()
        );
    }
}

/// The test has the power to see a wrong temperature: 200,000 draws at `T = 1` put a
/// chi-square far beyond the bound when compared with `T = 1.1`.
#[test]
fn a_slightly_wrong_temperature_is_detected() {
    let opts = SampleOptions {
        temperature: 1.0,
        top_k: 0,
        banned: vec![],
    };
    let got = counts(&opts, 99);
    let want = expected(1.1, 0, &[]);
    let chi2: f64 = got
        .iter()
        .zip(&want)
        .map(|(&o, &p)| (o as f64 - p * DRAWS as f64).powi(2) / (p * DRAWS as f64))
        .sum();
    assert!(
        chi2 > 10.0 * chi2_quantile(LOGITS.len() - 1),
        "chi-square {chi2:.1}"
    );
}

/// Temperature 0 is greedy: always the largest logit that is not banned.
#[test]
fn temperature_zero_is_greedy() {
    let mut rng = StdRng::seed_from_u64(5);
    let mut opts = SampleOptions {
        temperature: 0.0,
        top_k: 0,
        banned: vec![],
    };
    assert!((0..100).all(|_| draw(&LOGITS, &opts, &mut rng) == 1));
    opts.banned = vec![1];
    assert!((0..100).all(|_| draw(&LOGITS, &opts, &mut rng) == 4));
}
