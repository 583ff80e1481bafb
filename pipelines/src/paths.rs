//! Path measurement and path-set selection (ARCHITECTURE.md "Control plane"): probe results per path
//! become EWMA round-trip time, jitter and loss; a path set is the best k paths whose relay regions are
//! pairwise different, kept unless a clearly better set appears (hysteresis) or one of its paths fails
//! (its loss passes a threshold, or its probes stop being answered). Plain logic with the clock passed
//! in; the probing itself (sending, echoing) belongs to the dataplane.

/// How fast the averages follow new samples (RFC 6298 uses 1/8 for RTT and 1/4 for its variation).
const RTT_GAIN: f64 = 0.125;
const JITTER_GAIN: f64 = 0.25;
/// Probes a path remembers while it waits for their replies.
const OUTSTANDING: usize = 64;

/// Probe statistics of one path.
#[derive(Debug, Clone)]
pub struct PathStats {
    /// EWMA round-trip time, ns (None until the first reply).
    pub rtt_ns: Option<f64>,
    /// EWMA of the change between successive round-trip times, ns.
    pub jitter_ns: f64,
    /// EWMA of "this probe was lost" (0 to 1).
    pub loss: f64,
    pub sent: u64,
    pub answered: u64,
    pub lost: u64,
    /// When the last reply arrived (ns).
    pub last_reply_ns: Option<u64>,
    last_rtt: Option<f64>,
    /// Probes waiting for a reply: (sequence, sent at).
    waiting: [Option<(u32, u64)>; OUTSTANDING],
    loss_gain: f64,
}

impl PathStats {
    /// `loss_gain`: weight of each probe in the loss average (e.g. 0.1: about the last 10 probes).
    pub fn new(loss_gain: f64) -> PathStats {
        PathStats {
            rtt_ns: None,
            jitter_ns: 0.0,
            loss: 0.0,
            sent: 0,
            answered: 0,
            lost: 0,
            last_reply_ns: None,
            last_rtt: None,
            waiting: [None; OUTSTANDING],
            loss_gain: loss_gain.clamp(0.001, 1.0),
        }
    }

    fn lost_one(&mut self) {
        self.lost += 1;
        self.loss += self.loss_gain * (1.0 - self.loss);
    }

    /// A probe with sequence `seq` left at `now`. A probe still waiting in its slot counts as lost.
    pub fn on_sent(&mut self, seq: u32, now: u64) {
        let i = seq as usize % OUTSTANDING;
        if self.waiting[i].is_some() {
            self.lost_one();
        }
        self.waiting[i] = Some((seq, now));
        self.sent += 1;
    }

    /// The echo of probe `seq` came back at `now`; unknown or late echoes are ignored.
    pub fn on_reply(&mut self, seq: u32, now: u64) {
        let slot = &mut self.waiting[seq as usize % OUTSTANDING];
        let Some((s, sent)) = *slot else { return };
        if s != seq || now < sent {
            return;
        }
        *slot = None;
        let rtt = (now - sent) as f64;
        self.rtt_ns = Some(match self.rtt_ns {
            None => rtt,
            Some(r) => r + RTT_GAIN * (rtt - r),
        });
        if let Some(prev) = self.last_rtt {
            self.jitter_ns += JITTER_GAIN * ((rtt - prev).abs() - self.jitter_ns);
        }
        self.last_rtt = Some(rtt);
        self.loss -= self.loss_gain * self.loss;
        self.answered += 1;
        self.last_reply_ns = Some(now);
    }

    /// Probes unanswered for `timeout_ns` count as lost.
    pub fn expire(&mut self, now: u64, timeout_ns: u64) {
        for i in 0..OUTSTANDING {
            if let Some((_, sent)) = self.waiting[i] {
                if now.saturating_sub(sent) >= timeout_ns {
                    self.waiting[i] = None;
                    self.lost_one();
                }
            }
        }
    }
}

/// A path that may be chosen: its id, its relay's region and its measurements.
#[derive(Debug, Clone)]
pub struct Candidate {
    pub id: u8,
    pub region: String,
    pub stats: PathStats,
}

#[derive(Debug, Clone, Copy)]
pub struct SelectConfig {
    /// Paths in a set.
    pub k: usize,
    /// A new set replaces a healthy current one only if its score is lower by this fraction (0.2: 20 %)
    /// and by at least `min_gain_ns`.
    pub hysteresis: f64,
    /// ...and by at least this much (ns of summed RTT + jitter): paths a fraction of a millisecond apart
    /// on a short, noisy link do not trade places back and forth.
    pub min_gain_ns: f64,
    /// A path whose loss average passes this is failed and replaced.
    pub max_loss: f64,
    /// A path without a reply for this long is failed (its probes stopped).
    pub silent_ns: u64,
    /// What 100 % loss adds to a path's score, in ns of round-trip time.
    pub loss_penalty_ns: f64,
}

impl Default for SelectConfig {
    fn default() -> Self {
        SelectConfig {
            k: 2,
            hysteresis: 0.2,
            min_gain_ns: 1_000_000.0,
            max_loss: 0.1,
            silent_ns: 1_000_000_000,
            loss_penalty_ns: 100_000_000.0,
        }
    }
}

/// Why a path is not eligible.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unfit {
    NeverAnswered,
    Silent,
    Lossy,
}

impl SelectConfig {
    /// Whether a path may be in a set now.
    pub fn fitness(&self, c: &Candidate, now: u64) -> Result<(), Unfit> {
        let Some(last) = c.stats.last_reply_ns else {
            return Err(Unfit::NeverAnswered);
        };
        if now.saturating_sub(last) > self.silent_ns {
            return Err(Unfit::Silent);
        }
        if c.stats.loss > self.max_loss {
            return Err(Unfit::Lossy);
        }
        Ok(())
    }

    /// Lower is better: round-trip time plus jitter, plus the loss average times its penalty.
    pub fn score(&self, c: &Candidate) -> f64 {
        c.stats.rtt_ns.unwrap_or(f64::MAX / 4.0) + c.stats.jitter_ns + c.stats.loss * self.loss_penalty_ns
    }

    /// The path set to use: `current` (ids) when all its paths are fit, pairwise disjoint and no set of
    /// the same size scores better by more than both the hysteresis and the minimum gain; otherwise the
    /// best set of up to k fit paths through pairwise different regions (fewer when fewer regions are fit;
    /// empty only when no path is). The result is ordered by score.
    pub fn select(&self, current: &[u8], candidates: &[Candidate], now: u64) -> Vec<u8> {
        let fit: Vec<&Candidate> = candidates.iter().filter(|c| self.fitness(c, now).is_ok()).collect();
        let best = best_disjoint(&fit, self.k, |c| self.score(c));
        let total = |ids: &[u8]| -> Option<f64> {
            ids.iter()
                .map(|id| fit.iter().find(|c| c.id == *id).map(|c| self.score(c)))
                .sum::<Option<f64>>()
        };
        let cur_ok = !current.is_empty()
            && current.len() >= best.len()
            && disjoint(current, candidates)
            && total(current).is_some();
        if cur_ok {
            let (c, b) = (total(current).unwrap_or(f64::MAX), total(&best).unwrap_or(f64::MAX));
            if b >= c * (1.0 - self.hysteresis) || c - b < self.min_gain_ns {
                let mut keep = current.to_vec();
                keep.sort_by(|a, b| {
                    let s = |id: &u8| {
                        fit.iter()
                            .find(|c| c.id == *id)
                            .map(|c| self.score(c))
                            .unwrap_or(f64::MAX)
                    };
                    s(a).total_cmp(&s(b))
                });
                return keep;
            }
        }
        best
    }
}

fn disjoint(ids: &[u8], candidates: &[Candidate]) -> bool {
    let regions: Vec<Option<&str>> = ids
        .iter()
        .map(|id| candidates.iter().find(|c| c.id == *id).map(|c| c.region.as_str()))
        .collect();
    if regions.iter().any(|r| r.is_none()) {
        return false;
    }
    (0..regions.len()).all(|i| (i + 1..regions.len()).all(|j| regions[i] != regions[j]))
}

/// The set of up to `k` candidates through pairwise different regions with the lowest total score, as
/// large as the regions allow (exhaustive over combinations: candidate lists are small).
fn best_disjoint(fit: &[&Candidate], k: usize, score: impl Fn(&Candidate) -> f64) -> Vec<u8> {
    let mut best: Option<(usize, f64, Vec<usize>)> = None;
    let mut pick = Vec::with_capacity(k);
    fn walk(
        fit: &[&Candidate],
        k: usize,
        from: usize,
        pick: &mut Vec<usize>,
        sum: f64,
        score: &dyn Fn(&Candidate) -> f64,
        best: &mut Option<(usize, f64, Vec<usize>)>,
    ) {
        let better = match best {
            None => true,
            Some((n, s, _)) => pick.len() > *n || (pick.len() == *n && sum < *s),
        };
        if better && !pick.is_empty() {
            *best = Some((pick.len(), sum, pick.clone()));
        }
        if pick.len() == k {
            return;
        }
        for i in from..fit.len() {
            if pick.iter().any(|&j| fit[j].region == fit[i].region) {
                continue;
            }
            pick.push(i);
            walk(fit, k, i + 1, pick, sum + score(fit[i]), score, best);
            pick.pop();
        }
    }
    walk(fit, k, 0, &mut pick, 0.0, &score, &mut best);
    let mut out: Vec<(f64, u8)> = best
        .map(|(_, _, v)| v.into_iter().map(|i| (score(fit[i]), fit[i].id)).collect())
        .unwrap_or_default();
    out.sort_by(|a, b| a.0.total_cmp(&b.0));
    out.into_iter().map(|(_, id)| id).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: u64 = 1_000_000;

    /// A path probed `n` times at `rtt_ms` each, one probe every 10 ms up to `now`, `lose` of every 10 lost.
    fn probed(id: u8, region: &str, rtt_ms: u64, lose: u64, now: u64) -> Candidate {
        let mut s = PathStats::new(0.1);
        let n = 100u64;
        for i in 0..n {
            let t = now - (n - i) * 10 * MS;
            // As the control loop does on every tick: probes older than the timeout count as lost.
            s.expire(t, 50 * MS);
            s.on_sent(i as u32, t);
            if i % 10 >= lose {
                s.on_reply(i as u32, t + rtt_ms * MS);
            }
        }
        s.expire(now, 50 * MS);
        Candidate {
            id,
            region: region.into(),
            stats: s,
        }
    }

    #[test]
    fn ewma_follows_rtt_jitter_and_loss() {
        let now = 10_000 * MS;
        let c = probed(1, "eu", 20, 0, now);
        assert!((c.stats.rtt_ns.unwrap() - 20e6).abs() < 1.0);
        assert!(c.stats.jitter_ns < 1.0);
        assert!(c.stats.loss < 0.001);
        let lossy = probed(2, "us", 20, 3, now);
        assert!((0.2..0.45).contains(&lossy.stats.loss), "{}", lossy.stats.loss);
        assert_eq!(lossy.stats.lost, 30);
        // Alternating 10 and 30 ms: jitter near 20 ms, RTT between.
        let mut s = PathStats::new(0.1);
        for i in 0..200u32 {
            let t = i as u64 * 100 * MS;
            s.on_sent(i, t);
            s.on_reply(i, t + if i % 2 == 0 { 10 } else { 30 } * MS);
        }
        assert!((s.jitter_ns - 20e6).abs() < 1e6, "{}", s.jitter_ns);
        assert!((10e6..30e6).contains(&s.rtt_ns.unwrap()));
        // A late echo of a forgotten probe is ignored.
        s.on_reply(5, 10_000 * MS);
        assert_eq!(s.answered, 200);
    }

    #[test]
    fn the_best_set_has_pairwise_different_regions() {
        let now = 10_000 * MS;
        let cs = vec![
            probed(1, "eu", 10, 0, now),
            probed(2, "eu", 11, 0, now),
            probed(3, "us", 40, 0, now),
            probed(4, "ap", 30, 0, now),
        ];
        let cfg = SelectConfig::default();
        assert_eq!(
            cfg.select(&[], &cs, now),
            vec![1, 4],
            "two fastest regions, not two eu paths"
        );
        let cfg3 = SelectConfig { k: 3, ..cfg };
        assert_eq!(cfg3.select(&[], &cs, now), vec![1, 4, 3]);
        // Only two regions fit for k = 3: a set of two (degraded), never two paths of one region.
        assert_eq!(cfg3.select(&[], &cs[..3], now), vec![1, 3]);
    }

    #[test]
    fn loss_counts_in_the_score() {
        let now = 10_000 * MS;
        let cfg = SelectConfig {
            max_loss: 0.5,
            ..SelectConfig::default()
        };
        let fast_lossy = probed(1, "eu", 15, 3, now);
        let slow_clean = probed(2, "us", 30, 0, now);
        let other = probed(3, "ap", 35, 0, now);
        assert!(cfg.score(&fast_lossy) > cfg.score(&slow_clean));
        assert_eq!(cfg.select(&[], &[fast_lossy, slow_clean, other], now), vec![2, 3]);
    }

    #[test]
    fn hysteresis_keeps_a_healthy_set_until_a_clearly_better_one_appears() {
        let now = 10_000 * MS;
        let cfg = SelectConfig::default();
        let cs = vec![
            probed(1, "eu", 20, 0, now),
            probed(2, "us", 20, 0, now),
            probed(3, "ap", 18, 0, now),
        ];
        // 3 is 10 % better than 1 or 2: not enough to move.
        assert_eq!(cfg.select(&[1, 2], &cs, now), vec![1, 2]);
        let cs = vec![
            probed(1, "eu", 20, 0, now),
            probed(2, "us", 20, 0, now),
            probed(3, "ap", 5, 0, now),
        ];
        // Set {3, x} scores 25 vs 40: more than 20 % better, so the set moves.
        assert_eq!(cfg.select(&[1, 2], &cs, now), vec![3, 1]);
    }

    #[test]
    fn a_gain_under_the_minimum_does_not_move_a_healthy_set() {
        let now = 10_000 * MS;
        let cfg = SelectConfig::default();
        let us = |id: u8, region: &str, rtt_us: u64| {
            let mut c = probed(id, region, 0, 0, now);
            c.stats.rtt_ns = Some((rtt_us * 1000) as f64);
            c
        };
        // Sub-millisecond paths: {3, x} is 40 % better (0.9 ms vs 1.5 ms) but gains only 0.6 ms.
        let cs = vec![us(1, "eu", 700), us(2, "us", 800), us(3, "ap", 200)];
        assert_eq!(cfg.select(&[1, 2], &cs, now), vec![1, 2]);
        // The same fraction with a gain over 1 ms moves it.
        let cs = vec![us(1, "eu", 1400), us(2, "us", 1600), us(3, "ap", 400)];
        assert_eq!(cfg.select(&[1, 2], &cs, now), vec![3, 1]);
        // A failed path is replaced whatever the gain.
        let mut cs = vec![us(1, "eu", 700), us(2, "us", 800), us(3, "ap", 750)];
        cs[1].stats.loss = 0.5;
        assert_eq!(cfg.select(&[1, 2], &cs, now), vec![1, 3]);
    }

    #[test]
    fn a_lossy_or_silent_path_is_replaced() {
        let now = 10_000 * MS;
        let cfg = SelectConfig::default();
        // Path 2 loses 30 %: over max_loss, so the set moves at once, hysteresis or not.
        let cs = vec![
            probed(1, "eu", 20, 0, now),
            probed(2, "us", 20, 3, now),
            probed(3, "ap", 25, 0, now),
        ];
        assert_eq!(cfg.fitness(&cs[1], now), Err(Unfit::Lossy));
        assert_eq!(cfg.select(&[1, 2], &cs, now), vec![1, 3]);
        // Path 1 stops answering: silent after silent_ns, replaced.
        let later = now + 2_000 * MS;
        assert_eq!(cfg.fitness(&cs[0], later), Err(Unfit::Silent));
        let mut cs2 = cs.clone();
        cs2[2] = probed(3, "ap", 25, 0, later);
        cs2[1] = probed(2, "us", 20, 0, later);
        assert_eq!(cfg.select(&[1, 3], &cs2, later), vec![2, 3]);
        // Nothing fits: empty set (the caller keeps forwarding on what it has and says so).
        assert!(cfg.select(&[1, 2], &cs, now + 10_000 * MS).is_empty());
        // A never-probed path is not chosen.
        let fresh = Candidate {
            id: 9,
            region: "sa".into(),
            stats: PathStats::new(0.1),
        };
        assert_eq!(cfg.fitness(&fresh, now), Err(Unfit::NeverAnswered));
    }
}
