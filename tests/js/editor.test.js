// Geometry of the region editor (run by tests/unit/test_javascript.py with Node's test runner).
const test = require("node:test");
const assert = require("node:assert/strict");
const editor = require("../../javascript/model_fusion.js");

test("boxes stay inside the canvas with a minimum size", () => {
    assert.deepEqual(editor.clampBox([0.9, -0.2, 0.5, 0.5]), [0.5, 0, 0.5, 0.5]);
    assert.deepEqual(editor.clampBox([0.2, 0.2, 0, 0.001]), [0.2, 0.2, 0.02, 0.02]);
});

test("the topmost box is hit, its corner resizes", () => {
    const regions = [{box: [0, 0, 1, 1]}, {box: [0.5, 0.5, 0.25, 0.25]}, {mask: "iVBOR"}];
    assert.deepEqual(editor.hitTest(regions, 0.6, 0.6, 0.02, 0.02), {index: 1, corner: false});
    assert.deepEqual(editor.hitTest(regions, 0.74, 0.74, 0.02, 0.02), {index: 1, corner: true});
    assert.deepEqual(editor.hitTest(regions, 0.1, 0.1, 0.02, 0.02), {index: 0, corner: false});
    assert.equal(editor.hitTest([{mask: "iVBOR"}], 0.5, 0.5, 0.02, 0.02), null);
});

test("dragging moves or resizes within the canvas", () => {
    assert.deepEqual(editor.dragBox([0.1, 0.1, 0.2, 0.2], 0.9, 0, false), [0.8, 0.1, 0.2, 0.2]);
    assert.deepEqual(editor.dragBox([0.1, 0.1, 0.2, 0.2], 0.1, 0.05, true), [0.1, 0.1, 0.3, 0.25]);
});

test("a new box spans the two points whichever way it is drawn", () => {
    assert.deepEqual(editor.boxFromPoints(0.6, 0.7, 0.1, 0.2), [0.1, 0.2, 0.5, 0.5]);
    assert.equal(editor.boxFromPoints(0.1, 0.1, 0.105, 0.4), null);
});

test("JSON being typed is left alone", () => {
    assert.equal(editor.parseRegions("[{"), null);
    assert.deepEqual(editor.parseRegions(""), []);
    assert.deepEqual(editor.parseRegions('[{"box":[0,0,1,1]}, 3]'), [{box: [0, 0, 1, 1]}]);
});
