// Model Fusion: the region box editor drawn over the image's aspect ratio.
// Plain JS, loaded by the WebUI from javascript/. The JSON textbox of the Regions method is
// the one truth: the canvas reads it, draws every region, and writes it back after a drag.
// Boxes are [x, y, w, h] fractions of the image, the format of the API and the infotext.

const modelFusionEditor = (() => {
    const HANDLE = 10; // pixels of the resize corner
    const MIN_SIZE = 0.02; // smallest box side, as a fraction
    const COLOURS = {active: "rgba(52, 120, 246, 0.35)", fusion: "rgba(246, 140, 30, 0.35)"};
    const EDGES = {active: "rgb(52, 120, 246)", fusion: "rgb(246, 140, 30)"};

    function clamp(value, low, high) {
        return Math.min(Math.max(value, low), high);
    }

    function parseRegions(text) {
        try {
            const value = JSON.parse(text || "[]");
            return Array.isArray(value) ? value.filter((r) => r && typeof r === "object") : [];
        } catch (error) {
            return null; // being typed by hand: leave it alone
        }
    }

    function round(value) {
        return Math.round(value * 10000) / 10000;
    }

    // A box kept inside the canvas with sides of at least MIN_SIZE.
    function clampBox(box) {
        const w = clamp(box[2], MIN_SIZE, 1);
        const h = clamp(box[3], MIN_SIZE, 1);
        return [round(clamp(box[0], 0, 1 - w)), round(clamp(box[1], 0, 1 - h)), round(w), round(h)];
    }

    // The topmost region under a point: {index, corner} or null. Mask regions are not draggable.
    function hitTest(regions, x, y, handleX, handleY) {
        for (let i = regions.length - 1; i >= 0; i--) {
            const box = regions[i].box;
            if (!Array.isArray(box) || box.length !== 4) continue;
            const [bx, by, bw, bh] = box;
            if (x >= bx && x <= bx + bw && y >= by && y <= by + bh) {
                const corner = x >= bx + bw - handleX && y >= by + bh - handleY;
                return {index: i, corner};
            }
        }
        return null;
    }

    // The box after dragging by (dx, dy) from its start: moved, or resized from its corner.
    function dragBox(start, dx, dy, corner) {
        if (corner) return clampBox([start[0], start[1], start[2] + dx, start[3] + dy]);
        return clampBox([start[0] + dx, start[1] + dy, start[2], start[3]]);
    }

    // A new box spanning two points, or null when too small to be meant.
    function boxFromPoints(x0, y0, x1, y1) {
        const box = [Math.min(x0, x1), Math.min(y0, y1), Math.abs(x1 - x0), Math.abs(y1 - y0)];
        if (box[2] < MIN_SIZE || box[3] < MIN_SIZE) return null;
        return clampBox(box);
    }

    function attach(tab) {
        const app = gradioApp();
        const host = app.querySelector(`#script_${tab}_model_fusion_canvas`);
        const json = app.querySelector(`#script_${tab}_model_fusion_regions textarea`);
        const widthInput = app.querySelector(`#${tab}_width input[type=number]`);
        const heightInput = app.querySelector(`#${tab}_height input[type=number]`);
        if (!host || !json || host.dataset.modelFusion) return;
        host.dataset.modelFusion = "1";

        const canvas = document.createElement("canvas");
        canvas.tabIndex = 0;
        canvas.className = "model-fusion-editor";
        host.appendChild(canvas);
        const context = canvas.getContext("2d");
        const images = new Map(); // mask base64 -> Image
        let regions = parseRegions(json.value) || [];
        let lastText = json.value;
        let selected = -1;
        let drag = null;

        function imageSize() {
            return [Number(widthInput && widthInput.value) || 512, Number(heightInput && heightInput.value) || 512];
        }

        function size() {
            const [width, height] = imageSize();
            const cssWidth = Math.min(host.clientWidth || 512, 512);
            return [cssWidth, Math.round((cssWidth * height) / width)];
        }

        function write() {
            lastText = JSON.stringify(regions);
            json.value = lastText;
            updateInput(json);
        }

        function maskImage(data) {
            if (!images.has(data)) {
                const image = new Image();
                image.onload = draw;
                image.src = `data:image/png;base64,${data}`;
                images.set(data, image);
            }
            return images.get(data);
        }

        function draw() {
            const [w, h] = size();
            if (canvas.width !== w || canvas.height !== h) {
                canvas.width = w;
                canvas.height = h;
            }
            context.clearRect(0, 0, w, h);
            context.fillStyle = "rgba(128, 128, 128, 0.15)";
            context.fillRect(0, 0, w, h);
            // The image's outline and size: the canvas is the image, at its aspect ratio.
            context.setLineDash([6, 4]);
            context.strokeStyle = "rgba(128, 128, 128, 0.9)";
            context.lineWidth = 2;
            context.strokeRect(1, 1, w - 2, h - 2);
            context.setLineDash([]);
            const [imageWidth, imageHeight] = imageSize();
            const sizeText = `${imageWidth} × ${imageHeight}`;
            context.font = "12px sans-serif";
            context.fillStyle = "rgba(128, 128, 128, 0.9)";
            context.fillText(sizeText, w - context.measureText(sizeText).width - 6, h - 6);
            regions.forEach((region, i) => {
                const model = region.model === "active" ? "active" : "fusion";
                context.fillStyle = COLOURS[model];
                context.strokeStyle = EDGES[model];
                context.lineWidth = i === selected ? 3 : 1;
                let label = [0, 0];
                if (Array.isArray(region.box) && region.box.length === 4) {
                    const [x, y, bw, bh] = region.box.map(Number);
                    context.fillRect(x * w, y * h, bw * w, bh * h);
                    context.strokeRect(x * w, y * h, bw * w, bh * h);
                    context.fillStyle = EDGES[model];
                    context.fillRect((x + bw) * w - HANDLE, (y + bh) * h - HANDLE, HANDLE, HANDLE);
                    label = [x * w + 4, y * h + 14];
                } else if (typeof region.mask === "string") {
                    const image = maskImage(region.mask);
                    if (image.complete) {
                        context.globalAlpha = 0.35;
                        context.drawImage(image, 0, 0, w, h);
                        context.globalAlpha = 1;
                    }
                    label = [4, 14 + 14 * i];
                }
                const text = `${i + 1} ${model}: ${(region.prompt || "(main prompt)").slice(0, 40)}`;
                context.font = "12px sans-serif";
                context.lineWidth = 3;
                context.strokeStyle = "#fff";
                context.strokeText(text, label[0], label[1]);
                context.fillStyle = "#000";
                context.fillText(text, label[0], label[1]);
            });
        }

        function point(event) {
            const rect = canvas.getBoundingClientRect();
            return [clamp((event.clientX - rect.left) / rect.width, 0, 1), clamp((event.clientY - rect.top) / rect.height, 0, 1)];
        }

        canvas.addEventListener("mousedown", (event) => {
            const [x, y] = point(event);
            const hit = hitTest(regions, x, y, HANDLE / canvas.width, HANDLE / canvas.height);
            selected = hit ? hit.index : -1;
            drag = hit ? {x, y, index: hit.index, corner: hit.corner, start: regions[hit.index].box.slice()} : {x, y, index: -1};
            draw();
        });
        window.addEventListener("mousemove", (event) => {
            if (!drag) return;
            const [x, y] = point(event);
            if (drag.index >= 0) {
                regions[drag.index].box = dragBox(drag.start, x - drag.x, y - drag.y, drag.corner);
            }
            draw();
            if (drag.index < 0) {
                const box = boxFromPoints(drag.x, drag.y, x, y);
                if (box) context.strokeRect(box[0] * canvas.width, box[1] * canvas.height, box[2] * canvas.width, box[3] * canvas.height);
            }
        });
        window.addEventListener("mouseup", (event) => {
            if (!drag) return;
            const [x, y] = point(event);
            if (drag.index < 0) {
                const box = boxFromPoints(drag.x, drag.y, x, y);
                if (box) {
                    regions.push({box});
                    selected = regions.length - 1;
                }
            }
            drag = null;
            write();
            draw();
        });
        canvas.addEventListener("keydown", (event) => {
            if ((event.key === "Delete" || event.key === "Backspace") && selected >= 0) {
                regions.splice(selected, 1);
                selected = -1;
                write();
                draw();
                event.preventDefault();
            }
        });
        // The JSON also changes from the table, a pasted infotext or the API: follow it.
        setInterval(() => {
            if (json.value !== lastText && !drag) {
                const parsed = parseRegions(json.value);
                lastText = json.value;
                if (parsed) {
                    regions = parsed;
                    selected = Math.min(selected, regions.length - 1);
                }
            }
            draw();
        }, 500);
        draw();
    }

    // The accordion's status and checkpoint lists are built with the page: its hidden sync
    // button brings them up to date whenever the accordion is opened and a generation ends
    // (the WebUI then rewrites the tab's infotext).
    function followGenerations(tab) {
        const app = gradioApp();
        const sync = () => {
            const button = app.querySelector(`#script_${tab}_model_fusion_sync`);
            if (button) button.click();
        };
        const info = app.querySelector(`#html_info_${tab}`);
        if (!info || info.dataset.modelFusion) return;
        info.dataset.modelFusion = "1";
        let pending = null;
        new MutationObserver(() => {
            clearTimeout(pending);
            pending = setTimeout(sync, 300);
        }).observe(info, {childList: true, subtree: true, characterData: true});
        const header = app.querySelector(`#model_fusion_${tab} .label-wrap`);
        if (header) header.addEventListener("click", () => setTimeout(sync, 100));
    }

    if (typeof onUiLoaded === "function") {
        onUiLoaded(() => ["txt2img", "img2img"].forEach((tab) => {
            attach(tab);
            followGenerations(tab);
        }));
    }
    return {clampBox, hitTest, dragBox, boxFromPoints, parseRegions};
})();

if (typeof module !== "undefined") module.exports = modelFusionEditor;
