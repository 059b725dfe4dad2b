//! Parity with PyTorch: fixtures written by `reference/make_fixtures.py` (torch.nn.RNN/LSTM/GRU
//! with nn.Embedding and nn.Linear, computed in float64) are reproduced by the f32 engine.
//!
//! Every tensor (per-layer hidden and cell states, logits, per-token losses, loss, final state,
//! every parameter gradient and the initial-state gradients) must match with norm-wise relative
//! error <= 1e-4, and element-wise within `1e-4 |ref| + 1e-6`.

mod common;

use rnnscope::checkpoint::TensorFile;
use rnnscope::{CellKind, LanguageModel, LossWeights, State, Workspace};
use std::path::Path;

fn compare(case: &str, name: &str, got: &[f32], want: &[f64]) {
    assert_eq!(got.len(), want.len(), "{case}: `{name}` length");
    let got64: Vec<f64> = got.iter().map(|&v| v as f64).collect();
    let err = common::rel_err(&got64, want);
    assert!(err <= 1e-4, "{case}: `{name}` relative error {err:e}");
    for (i, (g, w)) in got64.iter().zip(want).enumerate() {
        assert!(
            (g - w).abs() <= 1e-4 * w.abs() + 1e-6,
            "{case}: `{name}`[{i}] = {g}, PyTorch {w}"
        );
    }
}

fn run_case(case: &str) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join(format!("reference/fixtures/{case}.safetensors"));
    let f = TensorFile::open(&path).unwrap();
    let config = f.model_config().unwrap();
    let meta = |k: &str| f.metadata[k].parse::<usize>().unwrap();
    let (steps, batch) = (meta("T"), meta("B"));
    assert_eq!(config.layers, meta("L"));
    assert_eq!(config.tie, f.metadata["tied"] == "true");
    let mut model = LanguageModel::<f32>::zeros(config.clone()).unwrap();
    f.load_params(&mut model, false).unwrap();

    let to_u32 =
        |n: &str| -> Vec<u32> { f.get(n).unwrap().data.iter().map(|&v| v as u32).collect() };
    let to_f32 =
        |n: &str| -> Vec<f32> { f.get(n).unwrap().data.iter().map(|&v| v as f32).collect() };
    let input = to_u32("input");
    let target = to_u32("target");
    let mut state = State::<f32>::zeros(&config, batch);
    state.h = to_f32("h0");
    if config.cell == CellKind::Lstm {
        state.c = to_f32("c0");
    }

    let mut ws = Workspace::default();
    model.forward(&mut ws, &input, &state, steps, batch, None);
    compare(case, "logits", &ws.logits, &f.get("logits").unwrap().data);
    let loss = model.loss(&mut ws, &target);
    compare(case, "loss", &[loss as f32], &f.get("loss").unwrap().data);
    let step_loss: Vec<f32> = ws.step_loss.iter().map(|&v| v as f32).collect();
    compare(
        case,
        "step_loss",
        &step_loss,
        &f.get("step_loss").unwrap().data,
    );
    for k in 0..config.layers {
        compare(
            case,
            &format!("hidden_l{k}"),
            ws.caches[k].outputs(),
            &f.get(&format!("hidden_l{k}")).unwrap().data,
        );
        if config.cell == CellKind::Lstm {
            let cells = ws.caches[k].cell_outputs();
            compare(
                case,
                &format!("cell_l{k}"),
                cells,
                &f.get(&format!("cell_l{k}")).unwrap().data,
            );
        }
    }
    let mut fin = State::zeros(&config, batch);
    model.final_state(&ws, &mut fin);
    compare(case, "hT", &fin.h, &f.get("hT").unwrap().data);
    if config.cell == CellKind::Lstm {
        compare(case, "cT", &fin.c, &f.get("cT").unwrap().data);
    }

    let mut grads = vec![0.0f32; model.layout.total()];
    let mut dstate = State::zeros(&config, batch);
    model
        .backward(
            &mut ws,
            &mut grads,
            LossWeights::Mean,
            Some(&mut dstate),
            None,
        )
        .unwrap();
    for e in model.layout.entries() {
        compare(
            case,
            &format!("grad.{}", e.name),
            &grads[e.range()],
            &f.get(&format!("grad.{}", e.name)).unwrap().data,
        );
    }
    compare(case, "grad.h0", &dstate.h, &f.get("grad.h0").unwrap().data);
    if config.cell == CellKind::Lstm {
        compare(case, "grad.c0", &dstate.c, &f.get("grad.c0").unwrap().data);
    }
}

#[test]
fn rnn_tanh_matches_pytorch() {
    run_case("rnn_tanh");
}

#[test]
fn rnn_relu_matches_pytorch() {
    run_case("rnn_relu");
}

#[test]
fn lstm_matches_pytorch() {
    run_case("lstm");
}

#[test]
fn gru_matches_pytorch() {
    run_case("gru");
}

#[test]
fn tied_lstm_matches_pytorch() {
    run_case("lstm_tied");
}
