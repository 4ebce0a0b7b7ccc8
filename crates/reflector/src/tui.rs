//! The terminal UI (`--tui`, the default when stdout is a terminal and no stats format is
//! chosen): live rates and the reflected rate over the kept history, totals, per-signature and
//! per-reason counts, per-worker lines and
//! backend facts, redrawn four times a second from the control plane's view. `q` (or Esc,
//! or Ctrl-C) quits; the terminal is restored however the UI ends.

use std::io::IsTerminal;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use ratatui::Frame;
use ratatui::layout::{Constraint, Layout};
use ratatui::style::{Modifier, Style};
use ratatui::text::Line;
use ratatui::widgets::{Block, Borders, Paragraph, Row, Sparkline, Table};
use reflector_core::{Counters, Reject, Signature};

use crate::control::Control;
use crate::stats::Rates;

/// Everything one screen shows (built from the control plane, drawn by [`draw`]).
#[derive(Debug, Clone, Default)]
pub struct View {
    /// "af-xdp on va (02:…), 1 worker".
    pub title: String,
    /// Counters since the last reset.
    pub totals: Counters,
    /// Rates of the last interval.
    pub rates: Option<Rates>,
    /// Per worker: placement and counters.
    pub workers: Vec<(String, Counters)>,
    /// Seconds running.
    pub uptime_s: f64,
    /// The busiest testers.
    pub testers: Vec<crate::report::TesterRow>,
    /// Reflected packets a second, one a second over the kept history (oldest first).
    pub history: Vec<u64>,
}

/// Testers the screen lists.
const SCREEN_TESTERS: usize = 5;

impl View {
    /// The current view of `ctl`.
    pub fn of(ctl: &Control) -> View {
        View {
            title: format!(
                "{} on {} ({}), {} worker(s)",
                ctl.info.backend.name(),
                ctl.interface,
                ctl.mac,
                ctl.workers.len()
            ),
            totals: ctl.totals(),
            rates: Some(*ctl.rates.lock().expect("rates lock")),
            workers: ctl.worker_rows(),
            uptime_s: ctl.started.elapsed().as_secs_f64(),
            testers: ctl.testers().into_iter().take(SCREEN_TESTERS).collect(),
            history: ctl
                .history
                .lock()
                .expect("history lock")
                .samples(crate::history::HISTORY_SECONDS)
                .iter()
                .map(|s| s.pps.round() as u64)
                .collect(),
        }
    }
}

fn num(n: u64) -> String {
    let s = n.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// Draws `view`.
pub fn draw(frame: &mut Frame<'_>, view: &View) {
    let c = &view.totals;
    let rates = view.rates.unwrap_or(Rates { rx_pps: 0.0, rx_mbps: 0.0, pps: 0.0, mbps: 0.0 });
    let [head, top, testers, bottom, foot] = Layout::vertical([
        Constraint::Length(1),
        Constraint::Length(9),
        Constraint::Length(SCREEN_TESTERS as u16 + 3),
        Constraint::Min(6),
        Constraint::Length(1),
    ])
    .areas(frame.area());
    frame.render_widget(
        Paragraph::new(format!(" reflector  {}  up {:.0} s", view.title, view.uptime_s))
            .style(Style::default().add_modifier(Modifier::REVERSED)),
        head,
    );
    let [now, totals, sigs] = Layout::horizontal([
        Constraint::Percentage(30),
        Constraint::Percentage(35),
        Constraint::Percentage(35),
    ])
    .areas(top);
    let block = Block::default().borders(Borders::ALL).title(" now ");
    let [numbers, over_time] =
        Layout::vertical([Constraint::Length(3), Constraint::Min(1)]).areas(block.inner(now));
    frame.render_widget(block, now);
    frame.render_widget(
        Paragraph::new(vec![
            Line::from(format!("reflected {:>12} pps", num(rates.pps.round() as u64))),
            Line::from(format!("          {:>12.2} Mb/s", rates.mbps)),
            Line::from(format!("received  {:>12} pps", num(rates.rx_pps.round() as u64))),
        ]),
        numbers,
    );
    // The reflected rate over the last seconds, one column a second (the newest on the right).
    let shown = &view.history[view.history.len().saturating_sub(over_time.width as usize)..];
    frame.render_widget(Sparkline::default().data(shown), over_time);
    let total_rows = [
        ("received", c.rx_packets),
        ("reflected", c.reflected_packets),
        ("rejected", c.rejected_packets()),
        ("tx errors", c.tx_errors),
        ("dropped by kernel", c.rx_dropped),
    ]
    .map(|(k, v)| Row::new(vec![k.to_string(), num(v)]));
    frame.render_widget(
        Table::new(total_rows, [Constraint::Min(18), Constraint::Length(14)])
            .block(Block::default().borders(Borders::ALL).title(" totals ")),
        totals,
    );
    let sig_rows =
        Signature::ALL.iter().map(|s| Row::new(vec![s.name().to_string(), num(c.by_signature[*s as usize])]));
    frame.render_widget(
        Table::new(sig_rows, [Constraint::Min(10), Constraint::Length(14)])
            .block(Block::default().borders(Borders::ALL).title(" by signature ")),
        sigs,
    );
    let tester_rows = view.testers.iter().map(|r| {
        let t = &r.tester;
        let who = if t.vlan != 0 { format!("{} (VLAN {})", t.addr(), t.vlan) } else { t.addr().to_string() };
        Row::new(vec![
            who,
            t.mac.to_string(),
            num(r.pps.round() as u64),
            num(t.packets),
            num(t.limited),
            if r.active { "testing".to_string() } else { "gone".to_string() },
        ])
    });
    frame.render_widget(
        Table::new(
            tester_rows,
            [
                Constraint::Min(18),
                Constraint::Length(17),
                Constraint::Length(12),
                Constraint::Length(14),
                Constraint::Length(12),
                Constraint::Length(8),
            ],
        )
        .header(
            Row::new(vec!["tester", "MAC", "packets/s", "answered", "limited", ""])
                .style(Style::default().add_modifier(Modifier::BOLD)),
        )
        .block(Block::default().borders(Borders::ALL).title(" testing now ")),
        testers,
    );
    let [reasons, workers] =
        Layout::horizontal([Constraint::Percentage(50), Constraint::Percentage(50)]).areas(bottom);
    let reason_rows = Reject::ALL
        .iter()
        .filter(|r| c.rejected[**r as usize] > 0)
        .map(|r| Row::new(vec![r.name().to_string(), num(c.rejected[*r as usize])]));
    frame.render_widget(
        Table::new(reason_rows, [Constraint::Min(16), Constraint::Length(14)])
            .block(Block::default().borders(Borders::ALL).title(" rejected, by reason ")),
        reasons,
    );
    let worker_rows = view.workers.iter().enumerate().map(|(i, (placement, w))| {
        Row::new(vec![format!("{i}"), placement.clone(), num(w.reflected_packets), num(w.rejected_packets())])
    });
    frame.render_widget(
        Table::new(
            worker_rows,
            [Constraint::Length(3), Constraint::Min(10), Constraint::Length(12), Constraint::Length(10)],
        )
        .header(
            Row::new(vec!["#", "cpu", "reflected", "rejected"])
                .style(Style::default().add_modifier(Modifier::BOLD)),
        )
        .block(Block::default().borders(Borders::ALL).title(" workers ")),
        workers,
    );
    frame.render_widget(Paragraph::new(" q quits"), foot);
}

/// Whether the UI should replace the stats lines: asked for, or stdout is a terminal and no
/// stats format was chosen.
pub fn wanted(asked: bool, stats_chosen: bool) -> bool {
    asked || (!stats_chosen && std::io::stdout().is_terminal())
}

/// Runs the UI until `q`, `stop`, `end`, or `on_tick` returning false (called before each
/// redraw); restores the terminal on the way out.
pub fn run(
    ctl: &Arc<Control>,
    stop: &AtomicBool,
    end: Option<Instant>,
    mut on_tick: impl FnMut() -> bool,
) -> anyhow::Result<()> {
    use ratatui::crossterm::event::{self, Event, KeyCode, KeyEventKind, KeyModifiers};
    let mut terminal = ratatui::try_init()?;
    let result = (|| -> anyhow::Result<()> {
        while !stop.load(Ordering::Relaxed) && end.is_none_or(|e| Instant::now() < e) {
            if !on_tick() {
                break;
            }
            let view = View::of(ctl);
            terminal.draw(|f| draw(f, &view))?;
            if event::poll(Duration::from_millis(250))?
                && let Event::Key(k) = event::read()?
                && k.kind == KeyEventKind::Press
                && (matches!(k.code, KeyCode::Char('q') | KeyCode::Esc)
                    || (k.code == KeyCode::Char('c') && k.modifiers.contains(KeyModifiers::CONTROL)))
            {
                break;
            }
        }
        Ok(())
    })();
    ratatui::restore();
    result
}

#[cfg(test)]
mod tests {
    use super::*;
    use ratatui::Terminal;
    use ratatui::backend::TestBackend;

    #[test]
    fn the_screen_shows_rates_totals_signatures_reasons_and_workers() {
        let mut totals = Counters { rx_packets: 1234, reflected_packets: 1200, ..Counters::default() };
        totals.by_signature[Signature::ProbeOt as usize] = 1200;
        totals.rejected[Reject::Oui as usize] = 34;
        let view = View {
            title: "af-xdp on va (02:00:00:00:00:01), 2 worker(s)".into(),
            totals,
            rates: Some(Rates { rx_pps: 1000.0, rx_mbps: 1.0, pps: 987.0, mbps: 0.95 }),
            workers: vec![("cpu 0".into(), totals), ("cpu 1".into(), Counters::default())],
            uptime_s: 12.0,
            testers: vec![crate::report::TesterRow {
                tester: reflector_core::testers::Tester {
                    ip: std::net::Ipv4Addr::new(192, 0, 2, 10).to_ipv6_mapped().octets(),
                    vlan: 100,
                    packets: 4321,
                    limited: 17,
                    ..Default::default()
                },
                pps: 1000.4,
                active: true,
            }],
            // A rate that rose from nothing to its top over the kept seconds.
            history: (0..=8).map(|i| i * 100).collect(),
        };
        let mut terminal = Terminal::new(TestBackend::new(100, 32)).unwrap();
        terminal.draw(|f| draw(f, &view)).unwrap();
        let screen: String = terminal
            .backend()
            .buffer()
            .content()
            .chunks(100)
            .map(|row| row.iter().map(|c| c.symbol()).collect::<String>() + "\n")
            .collect();
        for want in [
            "af-xdp on va (02:00:00:00:00:01), 2 worker(s)",
            "reflected          987 pps",
            "1,234",
            "probeot",
            "1,200",
            "oui",
            "34",
            "cpu 1",
            "testing now",
            "192.0.2.10 (VLAN 100)",
            "4,321",
            "1,000",
            "q quits",
        ] {
            assert!(screen.contains(want), "'{want}' not on screen:\n{screen}");
        }
        assert!(!screen.contains("dst_mac"), "reasons with no frames are not listed");
        // The rate over time: the history's columns, lowest to highest, under the numbers.
        // Its bottom row (in the "now" box, the first 30 columns) has a bar for each non-zero
        // second, the top row only the highest.
        let rows: Vec<String> = screen
            .lines()
            .map(|l| l.chars().take(30).collect::<String>())
            .filter(|l| l.chars().any(|c| "▁▂▃▄▅▆▇█".contains(c)))
            .collect();
        let bars = |row: &String| row.chars().filter(|c| "▁▂▃▄▅▆▇█".contains(*c)).count();
        assert!(rows.len() >= 2, "{rows:?}");
        assert_eq!(bars(rows.last().unwrap()), 8, "{rows:?}");
        assert!(bars(&rows[0]) < 8 && rows[0].trim_end_matches(['│', ' ']).ends_with('█'), "{rows:?}");
        assert_eq!(num(1_234_567), "1,234,567");
        assert_eq!(num(12), "12");
    }
}
