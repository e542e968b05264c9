//! How key presses change the TUI's state: quitting, views, selection, the filter, pause, and the
//! compare view's quota keys — kept apart from what the state counts so either reads on its own.

use std::sync::Arc;

use ratatui::crossterm::event::{KeyCode, KeyEvent, KeyEventKind, KeyModifiers};

use super::lab::QuotaChange;
use super::{App, View};

impl App {
    /// One key press.
    pub fn on_key(&mut self, key: KeyEvent) {
        if key.kind == KeyEventKind::Release {
            return;
        }
        if key.modifiers.contains(KeyModifiers::CONTROL) && key.code == KeyCode::Char('c') {
            self.should_quit = true;
            return;
        }
        if self.editing_filter {
            match key.code {
                KeyCode::Enter => self.editing_filter = false,
                KeyCode::Esc => {
                    self.editing_filter = false;
                    self.filter.clear();
                }
                KeyCode::Backspace => {
                    self.filter.pop();
                }
                KeyCode::Char(c) => self.filter.push(c),
                _ => {}
            }
            self.selected = 0;
            return;
        }
        if self.show_help {
            // Any key closes the help; q still quits.
            self.show_help = false;
            if key.code == KeyCode::Char('q') {
                self.should_quit = true;
            }
            return;
        }
        match key.code {
            KeyCode::Char('q') => self.should_quit = true,
            KeyCode::Char('?') => self.show_help = true,
            KeyCode::Tab => self.switch(self.view.next_in(self.views())),
            KeyCode::BackTab => self.switch(self.view.previous_in(self.views())),
            KeyCode::Char(c @ '1'..='9') => {
                if let Some(view) = self.views().get(usize::from(c as u8 - b'1')) {
                    self.switch(*view);
                }
            }
            KeyCode::Down | KeyCode::Char('j') => {
                self.selected = (self.selected + 1).min(self.rows().saturating_sub(1));
            }
            KeyCode::Up | KeyCode::Char('k') => self.selected = self.selected.saturating_sub(1),
            KeyCode::Home | KeyCode::Char('g') => self.selected = 0,
            KeyCode::End | KeyCode::Char('G') => self.selected = self.rows().saturating_sub(1),
            KeyCode::Enter => self.enter(),
            // Esc undoes the nearest thing: the guard closes open details (and stops there);
            // with none open, Esc clears the filter.
            KeyCode::Esc if self.pinned.take().is_none() => {
                self.filter.clear();
                self.selected = 0;
            }
            KeyCode::Char('p') => {
                self.paused = !self.paused;
                if !self.paused {
                    self.held = 0;
                }
            }
            KeyCode::Char('/') => {
                self.editing_filter = true;
                // The Changed view filters its own list; every other view filters the feed.
                if !matches!(self.view, View::Feed | View::Changed) {
                    self.switch(View::Feed);
                }
            }
            KeyCode::Char(c) if self.view == View::Compare => {
                let change = match c {
                    'r' => QuotaChange::RateDown,
                    'R' => QuotaChange::RateUp,
                    'b' => QuotaChange::BurstDown,
                    'B' => QuotaChange::BurstUp,
                    'w' => QuotaChange::WindowDown,
                    'W' => QuotaChange::WindowUp,
                    'c' | ' ' => {
                        self.rerun();
                        return;
                    }
                    'n' => {
                        self.next_policy();
                        return;
                    }
                    _ => return,
                };
                self.adjust(change);
            }
            _ => {}
        }
    }

    fn switch(&mut self, view: View) {
        if self.view != view {
            self.view = view;
            self.selected = 0;
        }
        if view == View::Compare && self.lab.result.is_none() {
            self.rerun();
        }
    }

    fn enter(&mut self) {
        match self.view {
            View::Feed => {
                let selected = self.selected_record().cloned();
                self.pinned = match (&self.pinned, selected) {
                    (Some(open), Some(s)) if Arc::ptr_eq(open, &s) => None,
                    (_, s) => s,
                };
            }
            View::Compare => self.rerun(),
            View::Pipeline | View::Latency | View::Changed => {}
        }
    }
}
