// The region editor in a real browser: draw, move, resize, delete, follow the JSON.
// Run by tests/unit/test_javascript.py when MODEL_FUSION_CHROMIUM names a Chromium and
// Node can require playwright-core.
const assert = require("node:assert/strict");
const path = require("node:path");
const {chromium} = require("playwright-core");

(async () => {
    const browser = await chromium.launch({executablePath: process.env.MODEL_FUSION_CHROMIUM, args: ["--no-sandbox"]});
    const page = await browser.newPage();
    const errors = [];
    page.on("pageerror", (error) => errors.push(error.message));
    await page.goto("file://" + path.join(__dirname, "editor.page.html"));
    const canvas = await page.$("canvas.model-fusion-editor");
    const box = await canvas.boundingBox();
    assert.equal(Math.round(box.height * 2), Math.round(box.width)); // the image's 1024x512 aspect
    const regions = async () => JSON.parse(await page.$eval("textarea", (t) => t.value));
    const drag = async (x0, y0, x1, y1) => {
        await page.mouse.move(box.x + x0 * box.width, box.y + y0 * box.height);
        await page.mouse.down();
        await page.mouse.move(box.x + x1 * box.width, box.y + y1 * box.height, {steps: 5});
        await page.mouse.up();
    };
    const near = (actual, expected) => actual.forEach((v, i) => assert.ok(Math.abs(v - expected[i]) < 0.01, `${actual} vs ${expected}`));

    await drag(0.1, 0.1, 0.4, 0.6);
    let now = await regions();
    assert.equal(now.length, 2);
    near(now[1].box, [0.1, 0.1, 0.3, 0.5]);
    assert.equal(now[0].prompt, "a castle"); // other fields are kept

    await drag(0.6, 0.6, 0.7, 0.6); // move the castle right by 0.1
    near((await regions())[0].box, [0.6, 0.5, 0.25, 0.25]);
    await drag(0.845, 0.745, 0.95, 0.95); // its corner: resize
    near((await regions())[0].box, [0.6, 0.5, 0.355, 0.455]);

    await canvas.focus();
    await page.keyboard.press("Delete");
    now = await regions();
    assert.equal(now.length, 1);
    near(now[0].box, [0.1, 0.1, 0.3, 0.5]);

    await page.$eval("textarea", (t) => { t.value = '[{"box":[0,0,0.5,0.5],"model":"active"}]'; });
    await page.waitForTimeout(700); // the editor follows the JSON (table, paste, API)
    await drag(0.25, 0.25, 0.75, 0.25);
    near((await regions())[0].box, [0.5, 0, 0.5, 0.5]);
    assert.ok((await page.evaluate(() => window.inputEvents)) >= 5);
    assert.deepEqual(errors, []);
    await browser.close();
    console.log("editor ok");
})().catch((error) => {
    console.error(error);
    process.exit(1);
});
