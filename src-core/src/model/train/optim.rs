//! AdamW with its moments in tensors, so that its state can be saved and a run resumed.

use std::path::Path;

use candle_core::{Device, Tensor, Var};
use candle_nn::VarMap;

use crate::error::{Error, Result};

/// AdamW with its state in tensors, so it can be saved and resumed.
pub(super) struct AdamW {
    vars: Vec<(String, Var, bool)>,
    m: Vec<Tensor>,
    v: Vec<Tensor>,
    pub(super) step: usize,
    pub(super) lr: f64,
    weight_decay: f64,
}

const BETA1: f64 = 0.9;
const BETA2: f64 = 0.98;
const EPS: f64 = 1e-8;

impl AdamW {
    pub(super) fn new(varmap: &VarMap, lr: f64, weight_decay: f64) -> Result<Self> {
        let data = varmap
            .data()
            .lock()
            .map_err(|_| Error::config("model", "variable map poisoned"))?;
        let mut vars: Vec<(String, Var, bool)> = data
            .iter()
            .map(|(name, var)| {
                let decay =
                    name.ends_with("weight") && !name.contains("ln") && !name.contains("emb");
                (name.clone(), var.clone(), decay)
            })
            .collect();
        vars.sort_by(|a, b| a.0.cmp(&b.0));
        let m = vars
            .iter()
            .map(|(_, v, _)| v.zeros_like())
            .collect::<candle_core::Result<_>>()?;
        let v = vars
            .iter()
            .map(|(_, v, _)| v.zeros_like())
            .collect::<candle_core::Result<_>>()?;
        Ok(AdamW {
            vars,
            m,
            v,
            step: 0,
            lr,
            weight_decay,
        })
    }

    pub(super) fn step(&mut self, grads: &candle_core::backprop::GradStore) -> Result<()> {
        self.step += 1;
        let t = self.step as i32;
        let c1 = 1.0 - BETA1.powi(t);
        let c2 = 1.0 - BETA2.powi(t);
        for (i, (_, var, decay)) in self.vars.iter().enumerate() {
            let Some(g) = grads.get(var.as_tensor()) else {
                continue;
            };
            let m = ((&self.m[i] * BETA1)? + (g * (1.0 - BETA1))?)?;
            let v = ((&self.v[i] * BETA2)? + (g.sqr()? * (1.0 - BETA2))?)?;
            let mut update = ((&m / c1)? / ((&v / c2)?.sqrt()? + EPS)?)?;
            if *decay && self.weight_decay > 0.0 {
                update = (update + (var.as_tensor() * self.weight_decay)?)?;
            }
            var.set(&(var.as_tensor() - (update * self.lr)?)?)?;
            self.m[i] = m;
            self.v[i] = v;
        }
        Ok(())
    }

    pub(super) fn save(&self, path: &Path) -> Result<()> {
        let mut map = std::collections::HashMap::new();
        for (i, (name, _, _)) in self.vars.iter().enumerate() {
            map.insert(format!("m.{name}"), self.m[i].clone());
            map.insert(format!("v.{name}"), self.v[i].clone());
        }
        candle_core::safetensors::save(&map, path)?;
        Ok(())
    }

    pub(super) fn load(&mut self, path: &Path, device: &Device) -> Result<()> {
        let map = candle_core::safetensors::load(path, device)?;
        for (i, (name, _, _)) in self.vars.iter().enumerate() {
            let get = |k: String| {
                map.get(&k).cloned().ok_or_else(|| Error::Checkpoint {
                    path: path.to_path_buf(),
                    message: format!("optimizer state lacks {k}"),
                })
            };
            self.m[i] = get(format!("m.{name}"))?;
            self.v[i] = get(format!("v.{name}"))?;
        }
        Ok(())
    }
}
