//! The run's recent past, kept by the control plane so that a page opened now can show what
//! happened before it: one sample a second for the last [`HISTORY_SECONDS`] (the rates, the
//! rejects by reason, the dwell time's p50 and p99 over that second when `--latency` measures
//! it) and each recent tester's rate in the same seconds, for at most [`HISTORY_TESTERS`]
//! testers. Fixed size: the samples and the testers' rows are allocated once, at the start.

use reflector_core::{Counters, Dwell, Reject};
use serde_json::{Map, Value, json};

use crate::report::TesterRow;

/// Seconds of history kept (one sample each).
pub const HISTORY_SECONDS: usize = 600;
/// Testers whose rates are kept; past it, a new one takes the row of the one seen longest ago.
pub const HISTORY_TESTERS: usize = 32;

/// One second of the run.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Sample {
    /// When it was taken: milliseconds since the Unix epoch, UTC.
    pub t_ms: u64,
    /// Frames received a second.
    pub rx_pps: f32,
    /// Frames reflected a second.
    pub pps: f32,
    /// Frames rejected a second.
    pub rejected_pps: f32,
    /// Frames rejected in this second, by reason.
    pub rejected: [u32; Reject::COUNT],
    /// The dwell time's p50 and p99 over this second's reflected frames (ns; `None` without
    /// `--latency`, or with no frame in the second).
    pub dwell_ns: Option<(u64, u64)>,
}

/// A tester's rate in each kept second (aligned with the samples' ring).
#[derive(Debug, Clone)]
struct Track {
    ip: [u8; 16],
    vlan: u16,
    /// Packets a second, by sample slot.
    pps: Box<[f32; HISTORY_SECONDS]>,
    /// The sample count when it was last active.
    last_active: u64,
}

/// The ring of samples and the testers' rates.
#[derive(Debug)]
pub struct History {
    samples: Box<[Option<Sample>; HISTORY_SECONDS]>,
    /// Samples taken so far (the next one goes to `taken % HISTORY_SECONDS`).
    taken: u64,
    tracks: Vec<Track>,
    /// The counters, dwell histogram and time of the last sample.
    last: Option<(std::time::Instant, Counters, Dwell)>,
}

impl Default for History {
    fn default() -> Self {
        History {
            samples: Box::new([None; HISTORY_SECONDS]),
            taken: 0,
            tracks: Vec::with_capacity(HISTORY_TESTERS),
            last: None,
        }
    }
}

impl History {
    /// Takes the sample of the second that ends `now`: the rates from the change of the
    /// run's counters (`lifetime`: never reset, so a counter reset does not show as a drop)
    /// and dwell histogram since the last call; `testers` as the control plane shows them.
    /// The first call only sets the starting point.
    pub fn record(
        &mut self,
        now: std::time::Instant,
        utc_ms: u64,
        lifetime: &Counters,
        dwell: Option<&Dwell>,
        testers: &[TesterRow],
    ) {
        let dwell_now = dwell.copied().unwrap_or_default();
        let Some((then, before, dwell_before)) = self.last.replace((now, *lifetime, dwell_now)) else {
            return;
        };
        let secs = now.saturating_duration_since(then).as_secs_f64().max(1e-3);
        let d = lifetime.delta(&before);
        let rate = |n: u64| (n as f64 / secs) as f32;
        let mut rejected = [0u32; Reject::COUNT];
        for (r, n) in rejected.iter_mut().zip(d.rejected) {
            *r = u32::try_from(n).unwrap_or(u32::MAX);
        }
        let dwell_ns = dwell.and_then(|_| {
            let mut second = Dwell::default();
            for (b, (now, before)) in
                second.buckets.iter_mut().zip(dwell_now.buckets.iter().zip(dwell_before.buckets))
            {
                *b = now.saturating_sub(before);
            }
            Some((second.quantile(0.5)?, second.quantile(0.99)?))
        });
        let slot = (self.taken % HISTORY_SECONDS as u64) as usize;
        self.samples[slot] = Some(Sample {
            t_ms: utc_ms,
            rx_pps: rate(d.rx_packets),
            pps: rate(d.reflected_packets),
            rejected_pps: rate(d.rejected_packets()),
            rejected,
            dwell_ns,
        });
        for track in &mut self.tracks {
            track.pps[slot] = 0.0;
        }
        for row in testers.iter().filter(|r| r.active) {
            let (ip, vlan) = (row.tester.ip, row.tester.vlan);
            let at = match self.tracks.iter().position(|t| t.ip == ip && t.vlan == vlan) {
                Some(at) => at,
                None if self.tracks.len() < HISTORY_TESTERS => {
                    self.tracks.push(Track {
                        ip,
                        vlan,
                        pps: Box::new([0.0; HISTORY_SECONDS]),
                        last_active: 0,
                    });
                    self.tracks.len() - 1
                }
                None => {
                    let oldest = (0..self.tracks.len())
                        .min_by_key(|&i| self.tracks[i].last_active)
                        .expect("a full table");
                    self.tracks[oldest] =
                        Track { ip, vlan, pps: Box::new([0.0; HISTORY_SECONDS]), last_active: 0 };
                    oldest
                }
            };
            let track = &mut self.tracks[at];
            track.pps[slot] = row.pps as f32;
            track.last_active = self.taken;
        }
        self.taken += 1;
    }

    /// The samples of the last `seconds` (oldest first; fewer when the run is younger).
    pub fn samples(&self, seconds: usize) -> Vec<Sample> {
        let n = (self.taken as usize).min(HISTORY_SECONDS).min(seconds);
        (0..n)
            .filter_map(|i| {
                self.samples[((self.taken - n as u64 + i as u64) % HISTORY_SECONDS as u64) as usize]
            })
            .collect()
    }

    /// `GET /api/v1/history?seconds=N`: the last `seconds` samples, and the rates of each
    /// tester active in them, one per sample.
    pub fn json(&self, seconds: usize) -> Value {
        let n = (self.taken as usize).min(HISTORY_SECONDS).min(seconds);
        let first = self.taken - n as u64;
        let samples: Vec<Value> = self.samples(seconds).iter().map(sample_json).collect();
        let testers: Vec<Value> = self
            .tracks
            .iter()
            .filter(|t| t.last_active >= first && n > 0)
            .map(|t| {
                let pps: Vec<Value> = (first..self.taken)
                    .map(|i| json!(round1(t.pps[(i % HISTORY_SECONDS as u64) as usize])))
                    .collect();
                let ip = std::net::Ipv6Addr::from(t.ip).to_canonical();
                json!({"ip": ip.to_string(), "vlan": (t.vlan != 0).then_some(t.vlan), "pps": pps})
            })
            .collect();
        json!({"interval_s": 1, "seconds": n, "kept_seconds": HISTORY_SECONDS, "samples": samples, "testers": testers})
    }

    /// The newest sample, as the event stream carries it, with the rate of each tester
    /// active in it.
    pub fn latest_json(&self) -> Value {
        let Some(sample) = self.samples(1).first().map(sample_json) else {
            return Value::Null;
        };
        let slot = ((self.taken - 1) % HISTORY_SECONDS as u64) as usize;
        let testers: Vec<Value> = self
            .tracks
            .iter()
            .filter(|t| t.last_active + 1 == self.taken)
            .map(|t| {
                let ip = std::net::Ipv6Addr::from(t.ip).to_canonical();
                json!({"ip": ip.to_string(), "vlan": (t.vlan != 0).then_some(t.vlan), "pps": round1(t.pps[slot])})
            })
            .collect();
        let mut sample = sample;
        sample["testers"] = json!(testers);
        sample
    }
}

fn round1(x: f32) -> f64 {
    (x as f64 * 10.0).round() / 10.0
}

/// A sample as JSON: the time in Unix seconds, the rates, the non-zero rejects by reason, and
/// the dwell quantiles (`null` when not measured in that second).
fn sample_json(s: &Sample) -> Value {
    let rejected: Map<String, Value> = Reject::ALL
        .iter()
        .filter(|r| s.rejected[**r as usize] > 0)
        .map(|r| (r.name().to_string(), json!(s.rejected[*r as usize])))
        .collect();
    json!({
        "t": s.t_ms as f64 / 1000.0,
        "rx_pps": round1(s.rx_pps),
        "pps": round1(s.pps),
        "rejected_pps": round1(s.rejected_pps),
        "rejected": rejected,
        "dwell_ns": s.dwell_ns.map(|(p50, p99)| json!({"p50": p50, "p99": p99})),
    })
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use reflector_core::testers::Tester;

    use super::*;

    fn counters(reflected: u64, rejected: u64) -> Counters {
        let mut c = Counters {
            rx_packets: reflected + rejected,
            reflected_packets: reflected,
            ..Counters::default()
        };
        c.rejected[Reject::NoSignature as usize] = rejected;
        c
    }

    fn tester(last_octet: u8, pps: f64) -> TesterRow {
        let mut ip = [0u8; 16];
        ip[10..12].copy_from_slice(&[0xff, 0xff]);
        ip[12..].copy_from_slice(&[192, 0, 2, last_octet]);
        TesterRow {
            tester: Tester { ip, packets: 1, last_seen_ns: 1, ..Tester::default() },
            pps,
            active: true,
        }
    }

    #[test]
    fn each_second_gives_its_rates_rejects_and_dwell_and_the_ring_keeps_the_last_ten_minutes() {
        let mut h = History::default();
        let start = Instant::now();
        let mut dwell = Dwell::default();
        h.record(start, 0, &counters(0, 0), Some(&dwell), &[]);
        assert!(h.samples(10).is_empty(), "the first call only sets the starting point");
        for s in 1..=HISTORY_SECONDS as u64 + 5 {
            dwell.record(1000 * s, 100);
            h.record(start + Duration::from_secs(s), s * 1000, &counters(100 * s, 3 * s), Some(&dwell), &[]);
        }
        let all = h.samples(usize::MAX);
        assert_eq!(all.len(), HISTORY_SECONDS);
        assert_eq!((all[0].t_ms, all.last().unwrap().t_ms), (6000, 605_000), "the oldest went first");
        let last = all.last().unwrap();
        assert_eq!((last.pps, last.rejected_pps, last.rx_pps), (100.0, 3.0, 103.0));
        assert_eq!(last.rejected[Reject::NoSignature as usize], 3);
        // Only this second's frames: 605 us each, in the bucket up to 1 ms (1 048 575 ns).
        assert_eq!(last.dwell_ns, Some((1_048_575, 1_048_575)));
        assert_eq!(h.samples(20).len(), 20);
        let j = h.json(30);
        assert_eq!((j["seconds"].as_u64(), j["samples"].as_array().unwrap().len()), (Some(30), 30));
        assert_eq!(j["samples"][29]["rejected"]["no_signature"], 3);
        assert_eq!(j["samples"][29]["dwell_ns"]["p99"], 1_048_575);
    }

    #[test]
    fn without_latency_there_is_no_dwell_and_a_young_run_gives_what_it_has() {
        let mut h = History::default();
        let start = Instant::now();
        h.record(start, 0, &counters(0, 0), None, &[]);
        h.record(start + Duration::from_millis(500), 500, &counters(50, 0), None, &[]);
        let j = h.json(600);
        assert_eq!(j["seconds"], 1);
        assert_eq!(j["samples"][0]["pps"], 100.0, "rates over the time that passed");
        assert_eq!(j["samples"][0]["dwell_ns"], Value::Null);
    }

    #[test]
    fn testers_rates_line_up_with_the_samples_and_the_table_stays_bounded() {
        let mut h = History::default();
        let start = Instant::now();
        h.record(start, 0, &counters(0, 0), None, &[]);
        h.record(start + Duration::from_secs(1), 1000, &counters(10, 0), None, &[tester(1, 10.0)]);
        h.record(
            start + Duration::from_secs(2),
            2000,
            &counters(30, 0),
            None,
            &[tester(1, 12.0), tester(2, 8.0)],
        );
        h.record(start + Duration::from_secs(3), 3000, &counters(30, 0), None, &[]);
        let j = h.json(600);
        let testers = j["testers"].as_array().unwrap();
        assert_eq!(testers.len(), 2);
        assert_eq!(testers[0]["ip"], "192.0.2.1");
        assert_eq!(testers[0]["pps"], json!([10.0, 12.0, 0.0]), "a stopped tester reads 0");
        assert_eq!(testers[1]["pps"], json!([0.0, 8.0, 0.0]));
        assert_eq!(History::default().latest_json(), Value::Null);
        // Only the last second asked: no tester was active in it.
        assert_eq!(h.json(1)["testers"], json!([]));
        assert_eq!(h.latest_json()["testers"], json!([]));
        assert_eq!(h.latest_json()["t"], 3.0);
        // Many testers: at most HISTORY_TESTERS rows, the newest kept.
        for s in 4..(4 + 2 * HISTORY_TESTERS as u64) {
            let row = tester((s % 250) as u8, 1.0);
            h.record(start + Duration::from_secs(s), s * 1000, &counters(30, 0), None, &[row]);
        }
        assert_eq!(h.tracks.len(), HISTORY_TESTERS);
        let newest = (3 + 2 * HISTORY_TESTERS as u64) % 250;
        assert!(h.json(1)["testers"][0]["ip"] == format!("192.0.2.{newest}").as_str(), "{}", h.json(1));
        assert_eq!(
            h.latest_json()["testers"],
            json!([{"ip": format!("192.0.2.{newest}"), "vlan": null, "pps": 1.0}])
        );
    }
}
