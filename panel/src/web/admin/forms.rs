//! The admin area's small form-and-table kit: every admin page is a [`FormView`] or a [`ListView`]
//! rendered by one of two templates (`admin/form.html`, `admin/list.html`).

use crate::admin::AdminError;
use crate::web::pages::Ctx;
use crate::web::session::CurrentAdmin;
use askama::Template;

#[derive(Clone, Debug, Default)]
pub struct Field {
    pub name: String,
    pub label: String,
    pub value: String,
    pub kind: &'static str,
    pub options: Vec<(String, String)>,
    pub help: String,
    pub error: Option<String>,
    pub readonly: bool,
}

pub(super) fn text(name: &str, label: &str, value: &str) -> Field {
    Field { name: name.into(), label: label.into(), value: value.into(), kind: "text", ..Default::default() }
}
pub(super) fn check(name: &str, label: &str, on: bool) -> Field {
    Field {
        name: name.into(),
        label: label.into(),
        value: if on { "on".into() } else { String::new() },
        kind: "checkbox",
        ..Default::default()
    }
}
pub(super) fn help(mut f: Field, h: &str) -> Field {
    f.help = h.into();
    f
}

#[derive(Clone, Debug, Default)]
pub struct FormView {
    pub title: String,
    pub action: String,
    pub button: String,
    pub intro: String,
    pub fields: Vec<Field>,
    pub error: Option<String>,
    pub aside: String,
    pub aside_name: String,
}

impl FormView {
    /// Puts a service's complaint next to its field, or on top of the form.
    pub(super) fn with_error(mut self, e: &AdminError) -> Self {
        if let AdminError::Invalid { field, message } = e {
            if let Some(f) = self.fields.iter_mut().find(|f| &f.name == field) {
                f.error = Some(message.clone());
                self.error = Some(format!("Please correct the marked field ({field})."));
                return self;
            }
        }
        self.error = Some(e.to_string());
        self
    }
}

#[derive(Clone, Debug, Default)]
pub struct Btn {
    pub action: String,
    pub label: String,
    pub class: &'static str,
    pub hidden: Vec<(String, String)>,
}

#[derive(Clone, Debug, Default)]
pub struct Cell {
    pub text: String,
    pub href: Option<String>,
    pub class: &'static str,
    pub buttons: Vec<Btn>,
}

pub(super) fn cell(t: impl ToString) -> Cell {
    Cell { text: t.to_string(), ..Default::default() }
}
pub(super) fn num(t: impl ToString) -> Cell {
    Cell { text: t.to_string(), class: "num", ..Default::default() }
}
pub(super) fn link(t: impl ToString, href: String) -> Cell {
    Cell { text: t.to_string(), href: Some(href), ..Default::default() }
}
pub(super) fn button(action: String, label: &str, class: &'static str) -> Btn {
    Btn { action, label: label.into(), class, hidden: Vec::new() }
}

#[derive(Clone, Debug, Default)]
pub struct ListView {
    pub title: String,
    pub intro: String,
    pub headers: Vec<&'static str>,
    pub rows: Vec<Vec<Cell>>,
    pub links: Vec<(String, String)>,
    pub form: Option<FormView>,
    pub error: Option<String>,
}

#[derive(Template)]
#[template(path = "admin/form.html")]
pub(super) struct FormPage {
    pub(super) ctx: Ctx,
    form: FormView,
}

#[derive(Template)]
#[template(path = "admin/list.html")]
pub(super) struct ListPage {
    pub(super) ctx: Ctx,
    list: ListView,
}

pub(super) fn form_page(a: &CurrentAdmin, form: FormView) -> FormPage {
    FormPage { ctx: Ctx::of(&a.session), form }
}

pub(super) fn list_page(a: &CurrentAdmin, list: ListView, done: Option<&str>) -> ListPage {
    ListPage { ctx: Ctx::of(&a.session).with_notice(done), list }
}
