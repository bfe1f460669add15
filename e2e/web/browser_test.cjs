// The file browser in headless Chromium (Debian's /usr/bin/chromium) driven
// by playwright-core: log in (a wrong token first), open a volume, go into a
// directory, preview a text file, download a large file and compare its
// SHA-256, and keep screenshots. Run by e2e/web_test.cc, which starts the
// server, uploads the files and passes everything in the environment:
//   CAIRN_UI_URL        http://127.0.0.1:PORT/ui/
//   CAIRN_UI_TOKEN      the server's token
//   CAIRN_UI_VOLUME     volume to open (namespace "default")
//   CAIRN_UI_DIR        directory in it; holds CAIRN_UI_FILE and README.txt
//   CAIRN_UI_FILE       file to download
//   CAIRN_UI_SHA256     its expected digest (hex)
//   CAIRN_UI_DOWNLOADS  where downloads are saved
//   CAIRN_UI_ARTIFACTS  where screenshots are kept
// Exits non-zero with a message on the first thing that is not as expected.
'use strict';

const crypto = require('crypto');
const fs = require('fs');
const path = require('path');
const { chromium } = require('playwright-core');

function env(name) {
  const v = process.env[name];
  if (!v) throw new Error(`${name} is not set`);
  return v;
}

function check(condition, message) {
  if (!condition) throw new Error(message);
}

function sha256(file) {
  return new Promise((resolve, reject) => {
    const hash = crypto.createHash('sha256');
    fs.createReadStream(file)
      .on('data', (d) => hash.update(d))
      .on('end', () => resolve(hash.digest('hex')))
      .on('error', reject);
  });
}

async function main() {
  const url = env('CAIRN_UI_URL');
  const volume = env('CAIRN_UI_VOLUME');
  const dir = env('CAIRN_UI_DIR');
  const file = env('CAIRN_UI_FILE');
  const artifacts = env('CAIRN_UI_ARTIFACTS');
  const downloads = env('CAIRN_UI_DOWNLOADS');
  fs.mkdirSync(artifacts, { recursive: true });
  fs.mkdirSync(downloads, { recursive: true });

  const browser = await chromium.launch({ executablePath: '/usr/bin/chromium', headless: true });
  try {
    const context = await browser.newContext({
      acceptDownloads: true,
      viewport: { width: 1280, height: 800 },
    });
    const page = await context.newPage();
    page.setDefaultTimeout(60_000);

    // Not logged in: the login page.
    await page.goto(url);
    await page.waitForSelector('input#token');
    check(page.url().endsWith('/ui/login'), `expected the login page, got ${page.url()}`);

    // A wrong token is refused with a message, and sets no cookie.
    await page.fill('#token', 'not-the-token');
    await Promise.all([page.waitForNavigation(), page.click('#login')]);
    const error = await page.textContent('#login-error');
    check(error && error.includes('not valid'), `no error for a wrong token: ${error}`);
    check((await context.cookies()).length === 0, 'a wrong token set a cookie');

    // The right token: the volumes of the default namespace.
    await page.fill('#token', env('CAIRN_UI_TOKEN'));
    await Promise.all([page.waitForURL(/\/ui\/n\/default\/$/), page.click('#login')]);
    const cookies = await context.cookies();
    check(cookies.length === 1, `expected one cookie, got ${JSON.stringify(cookies)}`);
    check(cookies[0].httpOnly && cookies[0].sameSite === 'Strict',
          `cookie is not HttpOnly + SameSite=Strict: ${JSON.stringify(cookies[0])}`);
    check(!page.url().includes(env('CAIRN_UI_TOKEN')), 'the token is in the URL');
    await page.screenshot({ path: path.join(artifacts, 'volumes.png'), fullPage: true });

    // Open the volume, then the directory.
    await Promise.all([page.waitForNavigation(),
                       page.getByRole('link', { name: volume, exact: true }).click()]);
    await Promise.all([page.waitForNavigation(),
                       page.getByRole('link', { name: `${dir}/`, exact: true }).click()]);
    const crumbs = await page.textContent('nav.crumbs');
    check(crumbs.includes(volume) && crumbs.includes(dir), `breadcrumbs: ${crumbs}`);
    const row = page.locator(`tr[data-name="${file}"]`);
    check((await row.count()) === 1, `${file} is not listed`);
    await page.screenshot({ path: path.join(artifacts, 'directory.png'), fullPage: true });

    // Download the file through its link and check every byte.
    const started = Date.now();
    const [download] = await Promise.all([
      page.waitForEvent('download', { timeout: 300_000 }),
      row.locator('a[download]').click(),
    ]);
    const saved = path.join(downloads, download.suggestedFilename());
    await download.saveAs(saved);
    const failure = await download.failure();
    check(failure === null, `download failed: ${failure}`);
    check(download.suggestedFilename() === file, `suggested name ${download.suggestedFilename()}`);
    const digest = await sha256(saved);
    check(digest === env('CAIRN_UI_SHA256'), `digest ${digest} != ${env('CAIRN_UI_SHA256')}`);
    const bytes = fs.statSync(saved).size;
    const seconds = (Date.now() - started) / 1000;
    console.log(`digest ok: ${bytes} bytes in ${seconds.toFixed(1)} s`);

    // Preview a text file.
    await Promise.all([page.waitForNavigation(),
                       page.getByRole('link', { name: 'README.txt', exact: true }).click()]);
    const text = await page.textContent('#preview');
    check(text.includes('Training data'), `preview shows: ${text}`);
    await page.screenshot({ path: path.join(artifacts, 'preview.png'), fullPage: true });
    console.log(`screenshots in ${artifacts}`);
  } finally {
    await browser.close();
  }
}

main().catch((e) => {
  console.error(e && e.stack ? e.stack : e);
  process.exit(1);
});
