#!/usr/bin/env node
// Opens a `compsearch report` HTML file in Debian's headless chromium (driven by puppeteer-core
// from scripts/node) and checks it the way a user sees it:
//   - no console error, no page error, no network request other than the file itself;
//   - every Pareto plot (svg.pareto) shows exactly one circle.front per front trial;
//   - the front table (#front-table) sorts ascending, then descending, on header clicks.
// usage: node scripts/report_browser_test.js REPORT.html FRONT_NUMBERS_COMMA_SEPARATED N_PLOTS
//        node scripts/report_browser_test.js --check   (only the prerequisites)
// Exit 0: pass; 1: fail (reasons on stderr); 77 with "SKIPPED: <reason>": chromium or
// puppeteer-core is not installed (scripts/setup.sh installs both).
'use strict';
const fs = require('fs');
const os = require('os');
const path = require('path');

const CHROMIUM = process.env.COMPSEARCH_CHROMIUM || '/usr/bin/chromium';

function skip(reason) {
  console.log('SKIPPED: ' + reason);
  process.exit(77);
}

async function main() {
  const [file, frontArg, plotsArg] = process.argv.slice(2);
  const checkOnly = file === '--check';
  if (!checkOnly && (!file || frontArg === undefined || !plotsArg)) {
    console.error('usage: report_browser_test.js REPORT.html FRONT_NUMBERS N_PLOTS');
    process.exit(2);
  }
  let puppeteer;
  try {
    puppeteer = require(path.join(__dirname, 'node', 'node_modules', 'puppeteer-core'));
  } catch (e) {
    skip('puppeteer-core is not installed in scripts/node (run scripts/setup.sh)');
  }
  if (!fs.existsSync(CHROMIUM)) skip(CHROMIUM + ' is not installed (run scripts/setup.sh)');
  if (checkOnly) {
    console.log('ok: puppeteer-core and ' + CHROMIUM + ' are installed');
    return;
  }
  const front = frontArg.split(',').filter((s) => s !== '').map(Number).sort((a, b) => a - b);
  const nPlots = Number(plotsArg);
  const failures = [];
  const userDataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'compsearch-chromium-'));
  const browser = await puppeteer.launch({
    executablePath: CHROMIUM,
    headless: true,
    userDataDir,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking',
           '--disable-component-update', '--disable-sync', '--no-first-run'],
  });
  try {
    const page = await browser.newPage();
    const url = 'file://' + path.resolve(file);
    page.on('console', (m) => { if (m.type() === 'error') failures.push('console error: ' + m.text()); });
    page.on('pageerror', (e) => failures.push('page error: ' + e.message));
    page.on('request', (r) => { if (r.url() !== url) failures.push('external request: ' + r.url()); });
    page.on('requestfailed', (r) => failures.push('request failed: ' + r.url()));
    await page.goto(url, { waitUntil: 'load' });

    const plots = await page.$$eval('svg.pareto', (svgs) => svgs.map((s) =>
      Array.from(s.querySelectorAll('circle.front')).map((c) => Number(c.getAttribute('data-trial')))));
    if (plots.length !== nPlots) failures.push(`expected ${nPlots} Pareto plots, found ${plots.length}`);
    plots.forEach((got, i) => {
      got.sort((a, b) => a - b);
      if (JSON.stringify(got) !== JSON.stringify(front))
        failures.push(`plot ${i}: front points ${JSON.stringify(got)}, expected ${JSON.stringify(front)}`);
    });
    // The points are visible (non-zero size, inside the page).
    const visible = await page.$$eval('svg.pareto circle.front', (cs) => cs.filter((c) => {
      const b = c.getBoundingClientRect();
      return b.width > 0 && b.height > 0;
    }).length);
    if (visible !== front.length * nPlots) failures.push(`only ${visible} front points are visible`);

    const column = async (col) => page.$$eval('#front-table tbody tr',
      (rows, col) => rows.map((r) => Number(r.cells[col].getAttribute('data-value'))), col);
    const rowsBefore = await column(0);
    if (JSON.stringify([...rowsBefore].sort((a, b) => a - b)) !== JSON.stringify(front))
      failures.push(`table rows ${JSON.stringify(rowsBefore)}, expected ${JSON.stringify(front)}`);
    const nCols = await page.$$eval('#front-table thead th', (ths) => ths.length);
    for (const col of [1, 2, nCols - 1]) {
      const header = `#front-table thead th:nth-child(${col + 1})`;
      await page.click(header);
      const asc = await column(col);
      const sortedAsc = [...asc].sort((a, b) => a - b);
      if (JSON.stringify(asc) !== JSON.stringify(sortedAsc))
        failures.push(`column ${col} after one click: ${JSON.stringify(asc)} is not ascending`);
      await page.click(header);
      const desc = await column(col);
      if (JSON.stringify(desc) !== JSON.stringify([...sortedAsc].reverse()))
        failures.push(`column ${col} after two clicks: ${JSON.stringify(desc)} is not descending`);
      const trials = await column(0);
      if (JSON.stringify([...trials].sort((a, b) => a - b)) !== JSON.stringify(front))
        failures.push(`sorting column ${col} lost or duplicated rows: ${JSON.stringify(trials)}`);
    }
  } finally {
    await browser.close();
    fs.rmSync(userDataDir, { recursive: true, force: true });
  }
  if (failures.length) {
    for (const f of failures) console.error('FAIL: ' + f);
    process.exit(1);
  }
  console.log(`ok: ${nPlots} plots x ${front.length} front points, table sorts`);
}

main().catch((e) => { console.error('FAIL: ' + (e && e.stack || e)); process.exit(1); });
