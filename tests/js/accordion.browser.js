// The accordion in a real WebUI through Chromium: a preset, the schedule in words, the
// numbers a generation sends, and an old infotext pasted back. Opt-in (tests/unit/test_javascript.py):
// MODEL_FUSION_CHROMIUM names a Chromium, MODEL_FUSION_WEBUI_URL a running WebUI with this
// extension, and Node can require playwright-core. MODEL_FUSION_SHOTS=DIR also saves the
// README's screenshots of the accordion there.
const assert = require("node:assert/strict");
const path = require("node:path");
const {chromium} = require("playwright-core");

const URL = process.env.MODEL_FUSION_WEBUI_URL;
const SHOTS = process.env.MODEL_FUSION_SHOTS;
const id = (name) => `#script_txt2img_model_fusion_${name}`;

(async () => {
    const browser = await chromium.launch({executablePath: process.env.MODEL_FUSION_CHROMIUM, args: ["--no-sandbox"]});
    const page = await browser.newPage({viewport: {width: 1500, height: 2000}});
    const errors = [];
    page.on("pageerror", (error) => errors.push(error.message));
    const sent = [];
    page.on("websocket", (socket) => socket.on("framesent", (frame) => sent.push(frame.payload)));
    page.on("request", (request) => request.method() === "POST" && sent.push(request.postData() || ""));
    await page.goto(URL, {timeout: 180000});
    const accordion = page.locator("#model_fusion_txt2img");
    await accordion.waitFor({timeout: 180000});
    await accordion.locator(".label-wrap").first().click();

    const pick = async (name, option) => {
        await page.locator(`${id(name)} input`).first().click();
        await page.locator(`ul.options li`, {hasText: option}).first().click();
    };
    const radio = (name, option) => page.locator(`${id(name)} label`, {hasText: option}).first().click();
    const text = (name) => page.locator(`${id(name)} textarea`).first().inputValue();
    const checked = (name) => page.locator(`${id(name)} input:checked`).first().inputValue();
    const settle = () => page.waitForTimeout(1500);
    const until = async (read, expected) => {  // the WebUI answers each change in turn: wait for the last
        for (let i = 0; i < 60 && (await read()) !== expected; i++) await page.waitForTimeout(500);
        assert.equal(await read(), expected);
    };

    // Every control says on hover what it does (the WebUI turns a component's tooltip into its title).
    for (const name of ["enabled", "method", "model", "unload", "preset", "fuse", "share", "kg", "ke", "fusion_selection", "windows", "stride"]) {
        const title = await page.locator(id(name)).first().evaluate((el) => el.title || el.querySelector("[title]")?.title || "");
        assert.ok(title.length > 20, `${name} has no hover hint`);
    }

    // A preset fills the fields it names (shown in Options).
    await page.locator(`${id("options")} .label-wrap`).first().click();
    await pick("preset", "paper's bee");
    await until(() => text("fusion_selection"), "850,1,1");
    await until(() => checked("mode"), "1");
    await until(() => checked("solo"), "fusion");
    await until(() => checked("fuse"), "the last");
    await until(() => page.locator(`${id("share")} input[type=number]`).inputValue(), "85");

    // The schedule in words writes the paper's numbers; the preset turns to custom.
    await radio("fuse", "the first");
    await until(() => text("fusion_selection"), "150,1,1");  // the first 85 %: let the words settle before the next edit
    await page.locator(`${id("share")} input[type=number]`).fill("30");
    await page.locator(`${id("share")} input[type=number]`).press("Enter");
    await until(() => text("fusion_selection"), "700,1,1");
    await until(() => checked("mode"), "2");
    await until(() => page.locator(`${id("preset")} input`).first().inputValue(), "custom");
    assert.match(await page.locator(id("schedule_note")).first().innerText(), /Fuses while t > 700 .*: steps 1–\d+ of 1 with|steps? .* of \d+/);

    // None keeps the share for when a part is chosen again.
    await radio("fuse", "none");
    await until(() => checked("mode"), "0");
    await radio("fuse", "the first");
    await until(() => checked("mode"), "2");
    await until(() => text("fusion_selection"), "700,1,1");

    // What a generation sends: fusion_selection then mode, side by side in the script's arguments.
    // (The size stays: the WebUI's own hires-resolution handler throws in the page when it changes.)
    // Gradio 4 (Forge, Neo) posts it to /queue/join: answered here, so the host never runs it (Neo's
    // default 1024x1024 on a CPU host takes more memory than the machine has); gradio 3 sends it
    // over its websocket, and the 1-step image at AUTOMATIC1111's default 512x512 is interrupted.
    await page.route("**/queue/join*", async (route) => {
        const body = route.request().postData() || "";
        if (body.includes('"task(') && body.includes('"700,1,1"')) {
            await route.fulfill({status: 200, contentType: "application/json", body: JSON.stringify({event_id: "model-fusion-test"})});
        } else {
            await route.continue();
        }
    });
    await page.locator("#txt2img_steps input[type=number]").fill("1");
    await page.locator("#txt2img_steps input[type=number]").press("Enter");
    await page.locator("#txt2img_generate").click();
    await page.waitForTimeout(3000);
    const request = sent.find((payload) => typeof payload === "string" && payload.includes('"700,1,1"'));
    assert.ok(request, "no generation request carried 700,1,1");
    const data = JSON.parse(request).data;
    const at = data.indexOf("700,1,1");
    assert.equal(String(data[at + 1]), "2");
    await page.locator("#txt2img_interrupt").click().catch(() => {});

    // An infotext written before the words existed pastes into the same numbers and words.
    await page.locator("#txt2img_prompt textarea").fill(
        "a lion\nSteps: 20, Sampler: Euler, CFG scale: 7, Seed: 1, Size: 512x512, Fusion: snb, Fusion selection: 600,1,1, Fusion mode: 2, Fusion solo: active",
    );
    await page.locator("#paste").first().click();
    await until(() => text("fusion_selection"), "600,1,1");
    await until(() => checked("fuse"), "the first");
    await until(() => page.locator(`${id("share")} input[type=number]`).inputValue(), "40");
    await until(() => page.locator(`${id("preset")} input`).first().inputValue(), "General + expert (paper)");

    if (SHOTS) {
        await pick("model", "expert");
        await page.locator(`${id("options")} .label-wrap`).first().click();  // closed again for the SNB picture
        await settle();
        await accordion.screenshot({path: path.join(SHOTS, "accordion.png")});
        await page.locator(`${id("options")} .label-wrap`).first().click();
        await settle();
        await accordion.screenshot({path: path.join(SHOTS, "accordion-options.png")});
        await page.locator(`${id("options")} .label-wrap`).first().click();
        await radio("method", "regions");
        await page.locator("#model_fusion_txt2img .label-wrap", {hasText: "Regions as JSON"}).first().click();
        const boxes = '[{"box":[0.05,0.1,0.4,0.8],"prompt":"a cartoon lion","model":"fusion"},' +
            '{"box":[0.55,0.25,0.4,0.7],"prompt":"a stone castle","weight":1.5}]';
        await page.locator(`${id("regions")} textarea`).fill(boxes);
        await page.locator(`${id("regions")} textarea`).blur();
        await until(async () => (await page.locator(`${id("table")} tbody tr`).count()) >= 2, true);
        await page.locator("#model_fusion_txt2img .label-wrap", {hasText: "Regions as JSON"}).first().click();
        await settle();
        await accordion.screenshot({path: path.join(SHOTS, "accordion-regions.png")});
    }
    assert.deepEqual(errors, []);
    await browser.close();
})().catch((error) => {
    console.error(error);
    process.exit(1);
});
