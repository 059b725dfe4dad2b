//! Parity with PyTorch: fixtures written by `reference/make_fixtures.py` (torch.nn.RNN/LSTM/GRU
//! with nn.Embedding and nn.Linear, computed in float64) are reproduced by the f32 engine.
//!
//! Every tensor (per-layer hidden and cell states, logits, per-token losses, loss, final state,
//! every parameter gradient and the initial-state gradients) must match with norm-wise relative
//! error <= 1e-4, and element-wise within `1e-4 |ref| + 1e-6`.
//!
//! The short cases (`T * B = 36`) run the per-step products as plain GEMMs; the long cases
//! (`T * B >= 64`) run them against the packed `W_hh`, once with layer 0 reading its input per
//! vocabulary row (`T * B >= V`) and once through the `[T, B, E]` embedding output (`V > T * B`).

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

fn fixture(name: &str) -> TensorFile {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join(format!("reference/fixtures/{name}.safetensors"));
    TensorFile::open(&path).unwrap()
}

/// Which path the fixture's pass takes: `(T * B >= 64, layer 0 reads tokens per vocabulary row)`.
fn paths_of(case: &str) -> (bool, bool) {
    let f = fixture(case);
    let config = f.model_config().unwrap();
    let meta = |k: &str| f.metadata[k].parse::<usize>().unwrap();
    let rows = meta("T") * meta("B");
    (rows >= 64, config.projects_tokens(rows))
}

fn run_case(case: &str) {
    let f = fixture(case);
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
    // The attention fixtures hold the top layer's states only (all torch.nn hands out), no
    // cell states: the final states and every gradient check the rest.
    let first = if config.attention.is_on() {
        config.layers - 1
    } else {
        0
    };
    for k in first..config.layers {
        compare(
            case,
            &format!("hidden_l{k}"),
            ws.caches[k].outputs(),
            &f.get(&format!("hidden_l{k}")).unwrap().data,
        );
        if config.cell == CellKind::Lstm && !config.attention.is_on() {
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

#[test]
fn long_pass_token_input_rnn_matches_pytorch() {
    assert_eq!(paths_of("long_tokens_rnn_tanh"), (true, true));
    run_case("long_tokens_rnn_tanh");
}

#[test]
fn long_pass_token_input_lstm_matches_pytorch() {
    assert_eq!(paths_of("long_tokens_lstm"), (true, true));
    run_case("long_tokens_lstm");
}

#[test]
fn long_pass_token_input_gru_matches_pytorch() {
    assert_eq!(paths_of("long_tokens_gru"), (true, true));
    run_case("long_tokens_gru");
}

#[test]
fn long_pass_embedded_input_rnn_matches_pytorch() {
    assert_eq!(paths_of("long_embedded_rnn_tanh"), (true, false));
    run_case("long_embedded_rnn_tanh");
}

#[test]
fn long_pass_embedded_input_lstm_matches_pytorch() {
    assert_eq!(paths_of("long_embedded_lstm"), (true, false));
    run_case("long_embedded_lstm");
}

#[test]
fn long_pass_embedded_input_gru_matches_pytorch() {
    assert_eq!(paths_of("long_embedded_gru"), (true, false));
    run_case("long_embedded_gru");
}

#[test]
fn short_cases_take_the_short_pass() {
    for case in ["rnn_tanh", "rnn_relu", "lstm", "gru", "lstm_tied"] {
        assert_eq!(paths_of(case), (false, true), "{case}");
    }
}

/// A tied GRU language model saved by PyTorch as its `state_dict()` (both `embedding.weight`
/// and `decoder.weight`, no rnnscope metadata) loads strictly as a tied model and scores the
/// fixture's tokens as PyTorch did.
#[test]
fn pytorch_state_dict_of_a_tied_model_loads_and_evaluates() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("reference/fixtures");
    let file = fixture("tied_state_dict");
    assert!(file.tensors.contains_key("decoder.weight"));
    assert!(file.tensors.contains_key("embedding.weight"));
    assert!(file.metadata.is_empty(), "a bare state dict");
    let ck = rnnscope::checkpoint::load::<f32>(&dir.join("tied_state_dict.safetensors")).unwrap();
    let model = ck.model;
    assert!(
        model.config.tie,
        "the state dict of a tied model loads as tied"
    );
    assert_eq!(model.config.cell, CellKind::Gru);
    let decoder = &file.get("decoder.weight").unwrap().data;
    let ours = model
        .layout
        .view(model.params(), "embedding.weight")
        .unwrap();
    assert!(ours.iter().zip(decoder).all(|(a, b)| *a as f64 == *b));

    let data = fixture("tied_state_dict_data");
    let meta = |k: &str| data.metadata[k].parse::<usize>().unwrap();
    let (steps, batch) = (meta("T"), meta("B"));
    let ids = |n: &str| -> Vec<u32> {
        data.get(n)
            .unwrap()
            .data
            .iter()
            .map(|&v| v as u32)
            .collect()
    };
    let mut ws = Workspace::default();
    let zero = State::<f32>::zeros(&model.config, batch);
    model.forward(&mut ws, &ids("input"), &zero, steps, batch, None);
    let case = "tied_state_dict";
    compare(
        case,
        "logits",
        &ws.logits,
        &data.get("logits").unwrap().data,
    );
    let loss = model.loss(&mut ws, &ids("target"));
    let step_loss: Vec<f32> = ws.step_loss.iter().map(|&v| v as f32).collect();
    compare(
        case,
        "step_loss",
        &step_loss,
        &data.get("step_loss").unwrap().data,
    );
    compare(
        case,
        "loss",
        &[loss as f32],
        &data.get("loss").unwrap().data,
    );
}

/// Orthogonal recurrence against `torch.linalg.matrix_exp` under autograd: `W_hh = expm(A)` of
/// the skew-symmetric `A = tril(P, -1) - tril(P, -1)^T`, the gradient with respect to `P` through
/// the Frechet derivative of `expm`; tanh (short pass) and modReLU (long pass).
#[test]
fn orthogonal_recurrence_matches_pytorch_matrix_exp() {
    for case in ["orthogonal_rnn_tanh", "orthogonal_rnn_modrelu"] {
        run_case(case);
    }
}

/// Three-layer residual stacks (`o^k = h^k + o^(k-1)`) of every cell against torch autograd.
#[test]
fn residual_stacks_match_pytorch() {
    for case in ["residual_rnn_tanh", "residual_lstm", "residual_gru"] {
        run_case(case);
    }
}

/// Attention of the top layer over its earlier states against the same equations under torch
/// autograd (`reference/make_fixtures.py`, `AttentiveLM`): dot and additive scores, the whole
/// window and a span, every cell, a short pass and a long one (packed `W_hh`, token rows).
#[test]
fn attention_matches_pytorch() {
    assert_eq!(paths_of("attention_rnn_additive_span_long"), (true, true));
    for case in [
        "attention_rnn_dot",
        "attention_lstm_additive",
        "attention_gru_dot_span",
        "attention_rnn_additive_span_long",
    ] {
        run_case(case);
    }
}

/// `nn.LSTM(proj_size = P)`: `h_t = W_hr (o * tanh(c_t))` with `P = 5` values (H = 11 and 20),
/// loaded from the bare state dict's names (`rnn.weight_hr_l{k}`, `weight_hh_l{k}` `[4H, P]`);
/// the states, logits, loss and every gradient, untied on a short pass and tied (E = P) on a
/// long one (packed `W_hh [4H, P]`, token rows).
#[test]
fn lstm_with_projection_matches_pytorch() {
    assert_eq!(paths_of("lstm_proj"), (false, true));
    assert_eq!(paths_of("lstm_proj_tied_long"), (true, true));
    for case in ["lstm_proj", "lstm_proj_tied_long"] {
        let config = fixture(case).model_config().unwrap();
        assert_eq!(
            (config.cell, config.proj_size),
            (CellKind::Lstm, 5),
            "{case}"
        );
        run_case(case);
    }
}
