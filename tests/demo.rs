//! The main job end to end: `rnnscope demo` must show the effect by training, not by
//! construction: the tanh RNN at chance on the dependent word at the longest distance while
//! the LSTM learns it, with the RNN's gradient ratio R(l) there orders of magnitude below.

use std::process::Command;

#[test]
fn demo_shows_the_vanishing_gradient_effect() {
    let out_dir = std::env::temp_dir().join(format!("rnnscope-demo-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&out_dir);
    let out = Command::new(env!("CARGO_BIN_EXE_rnnscope"))
        .args(["demo", "--out", out_dir.to_str().unwrap()])
        .output()
        .expect("the binary runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("| distance l | tanh RNN accuracy | LSTM accuracy |"),
        "{stdout}"
    );
    let rows: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out_dir.join("results.json")).unwrap())
            .unwrap();
    let rows = rows.as_array().unwrap();
    let get = |cell: &str, l: u64| {
        rows.iter()
            .find(|r| r["cell"] == cell && r["distance"] == l)
            .unwrap_or_else(|| panic!("no row for {cell} at {l}"))
    };
    let longest = rows
        .iter()
        .map(|r| r["distance"].as_u64().unwrap())
        .max()
        .unwrap();
    let shortest = rows
        .iter()
        .map(|r| r["distance"].as_u64().unwrap())
        .min()
        .unwrap();
    let acc = |cell, l| get(cell, l)["accuracy"].as_f64().unwrap();
    let ratio = |cell, l| get(cell, l)["gradient_ratio"].as_f64().unwrap();
    let chance = get("rnn", longest)["chance"].as_f64().unwrap();
    assert!(
        acc("rnn", shortest) > 0.9,
        "the RNN learns the short dependency"
    );
    assert!(
        acc("rnn", longest) < chance + 0.1,
        "the RNN is near chance far away"
    );
    assert!(
        acc("lstm", longest) > 0.9,
        "the LSTM learns the long dependency"
    );
    assert!(
        ratio("rnn", longest) * 100.0 < ratio("lstm", longest),
        "R(l): rnn {} vs lstm {}",
        ratio("rnn", longest),
        ratio("lstm", longest)
    );
    // Every run left its metrics, checkpoint and gradient-flow analysis.
    for r in rows {
        let dir = out_dir.join(format!(
            "{}_l{}",
            r["cell"].as_str().unwrap(),
            r["distance"]
        ));
        for f in [
            "metrics.csv",
            "best.safetensors",
            "summary.json",
            "gradflow/gradflow.json",
            "gradflow/profile_l0.csv",
        ] {
            assert!(dir.join(f).is_file(), "{} missing", dir.join(f).display());
        }
    }
    let _ = std::fs::remove_dir_all(&out_dir);
}
