// Drives the Swagger UI at /docs as a person would, in headless Chromium with
// every request outside the server refused (no internet): Authorize with an
// access token, then "Try it out" and "Execute" on GET /me. Fails unless /me
// answers 200 and nothing outside the server was requested.
const { chromium } = require('playwright-core');

const base = process.env.BASE_URL;
const token = process.env.ACCESS_TOKEN;

(async () => {
  const browser = await chromium.launch({
    executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
           '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  });
  const page = await browser.newPage({ viewport: { width: 1280, height: 1600 } });
  const outside = [];
  await page.route('**/*', route => {
    const url = route.request().url();
    if (url.startsWith(base + '/') || url.startsWith('data:')) return route.continue();
    outside.push(url);
    return route.abort();
  });
  const errors = [];
  page.on('pageerror', e => errors.push(String(e)));

  await page.goto(base + '/docs');
  await page.waitForSelector('.opblock', { timeout: 15000 });
  await page.click('button.authorize');
  // The dialog says how to paste the token (alone: Swagger UI adds "Bearer ").
  const dialog = await page.textContent('.modal-ux');
  const explained = dialog.includes('Paste the token alone');
  await page.fill('.modal-ux input[type=text]', token);
  await page.click('.modal-ux button.authorize');
  await page.click('.modal-ux button.btn-done');
  const op = '#operations-account-me';
  await page.click(`${op} .opblock-summary`);
  if (!(await page.isVisible(`${op} button.execute`))) await page.click(`${op} button.try-out__btn`);
  await page.click(`${op} button.execute`);
  const cell = `${op} .live-responses-table .response .response-col_status`;
  await page.waitForSelector(cell, { timeout: 10000 });
  const status = (await page.textContent(cell)).trim();
  // POST /refresh comes pre-filled with a usable shape, not "********"
  // (what Swagger UI writes for a password-format field).
  const refresh = '#operations-tokens-refresh';
  await page.click(`${refresh} .opblock-summary`);
  if (!(await page.isVisible(`${refresh} button.execute`))) await page.click(`${refresh} button.try-out__btn`);
  const refreshBody = await page.inputValue(`${refresh} textarea.body-param__text`);
  const masked = refreshBody.includes('****');
  // /me has a summary of its own.
  const meSummary = ((await page.textContent(`${op} .opblock-summary-description`)) || '').trim();
  if (process.env.SCREENSHOT) await page.screenshot({ path: process.env.SCREENSHOT });
  await browser.close();

  console.log(`GET /me from the Swagger UI: ${status}; requests outside the server: ${outside.length}; page errors: ${errors.length}`);
  console.log(`Authorize explains the token: ${explained}; /refresh body masked: ${masked}; /me summary: "${meSummary}"`);
  if (status !== '200' || outside.length || errors.length || !explained || masked || !meSummary) {
    console.error({ status, outside, errors, explained, refreshBody, meSummary });
    process.exit(1);
  }
})().catch(e => { console.error(e); process.exit(1); });
