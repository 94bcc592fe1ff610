//! PDF invoices (issue 14): the printable invoice rendered to PDF by headless Chromium
//! (`--print-to-pdf`, Debian's `chromium`, the browser the tests already drive), then archived
//! in `invoice_pdfs` once. Rendering twice gives different bytes (Chromium stamps the time), so
//! the archive is the invoice: the first PDF stored wins, a concurrent render is thrown away,
//! and every download is the stored bytes. The archiver in `panel serve` renders each newly
//! issued invoice soon after it is issued; a download before that renders and archives it.

use crate::db::invoices as sql;
use sqlx::PgPool;
use std::path::PathBuf;
use std::time::Duration;
use tokio::sync::Semaphore;
use uuid::Uuid;

#[derive(Debug, thiserror::Error)]
pub enum PdfError {
    #[error("rendering the PDF failed: {0}")]
    Render(String),
    #[error("an invoice is archived only once issued")]
    NotIssued,
    /// The renderer is not installed (or cannot be run): no invoice's fault, so the archiver
    /// stops its batch and the download answers 503.
    #[error("the PDF renderer {0} cannot be run: {1}")]
    Unavailable(String, String),
    #[error("database: {0}")]
    Db(#[from] sqlx::Error),
}

/// Chromium is heavy: two renders at a time per process.
static RENDERS: Semaphore = Semaphore::const_new(2);

/// A scratch directory removed when dropped.
struct Scratch(PathBuf);

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Renders a self-contained HTML page (no scripts, no remote resources) to PDF.
pub async fn render(chromium: &str, html: &str) -> Result<Vec<u8>, PdfError> {
    let _permit = RENDERS.acquire().await.map_err(|e| PdfError::Render(e.to_string()))?;
    let dir = Scratch(std::env::temp_dir().join(format!("vessel-pdf-{}", Uuid::new_v4())));
    let fail = |what: &str, e: std::io::Error| PdfError::Render(format!("{what}: {e}"));
    std::fs::create_dir_all(&dir.0).map_err(|e| fail("scratch directory", e))?;
    let page = dir.0.join("invoice.html");
    let out = dir.0.join("invoice.pdf");
    std::fs::write(&page, html).map_err(|e| fail("writing the page", e))?;
    let run = tokio::process::Command::new(chromium)
        .args([
            "--headless",
            // Root cannot use Chromium's sandbox; the page is our own template, every customer
            // value escaped, with no script and nothing remote. (Turning scripts off stops
            // --print-to-pdf from writing anything.)
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            "--disable-extensions",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-crash-reporter",
            "--disable-breakpad",
            "--no-pdf-header-footer",
        ])
        .arg(format!("--user-data-dir={}", dir.0.join("profile").display()))
        .arg(format!("--print-to-pdf={}", out.display()))
        .arg(format!("file://{}", page.display()))
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(Duration::from_secs(60), run)
        .await
        .map_err(|_| PdfError::Render("chromium took longer than 60 s".into()))?
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound | std::io::ErrorKind::PermissionDenied => {
                PdfError::Unavailable(chromium.to_string(), e.to_string())
            }
            _ => fail(&format!("running {chromium}"), e),
        })?;
    let pdf = std::fs::read(&out).map_err(|e| {
        PdfError::Render(format!(
            "{chromium} wrote no PDF ({e}; exit {}): {}",
            output.status,
            String::from_utf8_lossy(&output.stderr).chars().take(500).collect::<String>()
        ))
    })?;
    if !pdf.starts_with(b"%PDF-") {
        return Err(PdfError::Render("the output is not a PDF".into()));
    }
    Ok(pdf)
}

/// The archived PDF of an issued invoice: rendered from `html` and archived if it has none yet.
pub async fn archived(pool: &PgPool, chromium: &str, invoice: Uuid, html: &str) -> Result<Vec<u8>, PdfError> {
    if let Some(pdf) = sql::pdf(pool, invoice).await? {
        return Ok(pdf);
    }
    let pdf = render(chromium, html).await?;
    if !sql::store_pdf(pool, invoice, &pdf).await? {
        tracing::debug!(%invoice, "a PDF was archived meanwhile: that one stays");
    }
    sql::pdf(pool, invoice).await?.ok_or(PdfError::NotIssued)
}
