//! The maps the daemon reads and writes while the programs run: counters,
//! the runtime switches, storm aggregates.

use aya::maps::{Array, MapData, PerCpuArray, PerCpuHashMap};
use rsttrace_common::{
    config::Control,
    event::{AggKey, AggValue, COUNTERS_LEN},
};

use super::CaptureError;

/// Per-CPU counters summed (see `rsttrace_common::event::COUNTER_*`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Counters {
    pub values: [u64; COUNTERS_LEN as usize],
    /// Invocations the kernel skipped because the same program was
    /// already running on that CPU (bpf_prog_info.recursion_misses).
    pub recursion_misses: u64,
}

fn map_error(name: &'static str) -> impl Fn(aya::maps::MapError) -> CaptureError {
    move |source| CaptureError::Map { name, source }
}

pub(super) fn sum_counters(map: &PerCpuArray<MapData, u64>) -> [u64; COUNTERS_LEN as usize] {
    let mut out = [0; COUNTERS_LEN as usize];
    for (i, slot) in out.iter_mut().enumerate() {
        if let Ok(per_cpu) = map.get(&(i as u32), 0) {
            *slot = per_cpu.iter().sum();
        }
    }
    out
}

pub(super) fn set_control(ebpf: &mut aya::Ebpf, control: Control) -> Result<(), CaptureError> {
    let map = ebpf
        .map_mut("CONTROL")
        .ok_or(CaptureError::MissingMap("CONTROL"))?;
    let mut array: Array<&mut MapData, Control> =
        Array::try_from(map).map_err(map_error("CONTROL"))?;
    array.set(0, control, 0).map_err(map_error("CONTROL"))
}

/// Removes and returns the aggregation entries of `epoch`, summed over
/// CPUs (the programs count into the other epoch meanwhile).
pub(super) fn take_aggregates(
    ebpf: &mut aya::Ebpf,
    epoch: u8,
) -> Result<Vec<(AggKey, AggValue)>, CaptureError> {
    let map = ebpf.map_mut("AGG").ok_or(CaptureError::MissingMap("AGG"))?;
    let mut agg: PerCpuHashMap<&mut MapData, AggKey, AggValue> =
        PerCpuHashMap::try_from(map).map_err(map_error("AGG"))?;
    let keys: Vec<AggKey> = agg
        .keys()
        .filter_map(Result::ok)
        .filter(|k| k.epoch == epoch)
        .collect();
    let mut out = Vec::with_capacity(keys.len());
    for key in keys {
        if let Ok(values) = agg.get(&key, 0) {
            let total = sum(values.iter());
            if total.count > 0 {
                out.push((key, total));
            }
        }
        let _ = agg.remove(&key);
    }
    Ok(out)
}

/// One key's counts from every CPU as one.
fn sum<'a>(values: impl Iterator<Item = &'a AggValue>) -> AggValue {
    let mut total = AggValue::default();
    for v in values.filter(|v| v.count > 0) {
        if total.count == 0 {
            total = *v;
        } else {
            total.count += v.count;
            total.first_jiffies = total.first_jiffies.min(v.first_jiffies);
            total.last_jiffies = total.last_jiffies.max(v.last_jiffies);
        }
    }
    total
}
