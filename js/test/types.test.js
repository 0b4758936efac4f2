// index.d.ts against the code: tsc --strict compiles a bot written from the
// README (test/types/usage.ts), and every value, class method and wire
// member the declarations promise exists at run time, and every export of
// index.js is declared. Needs no agent.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { join } from 'node:path';
import ts from 'typescript';
import * as keyward from '../index.js';
import { REPO } from './harness.js';

const JS = join(REPO, 'js');

test('tsc --strict accepts the README usage and refuses the misuse', () => {
	const tsc = join(JS, 'node_modules', 'typescript', 'bin', 'tsc');
	try {
		execFileSync(process.execPath, [tsc, '-p', join(JS, 'test', 'types', 'tsconfig.json')], { encoding: 'utf8' });
	} catch (e) {
		assert.fail(`tsc found errors in index.d.ts or its use:\n${e.stdout}${e.stderr}`);
	}
});

// The declarations of index.d.ts, read with the compiler's own API.
function declarations() {
	const file = join(JS, 'index.d.ts');
	const program = ts.createProgram([file], { strict: true, noEmit: true, types: ['node'], typeRoots: [join(JS, 'node_modules', '@types')] });
	const diagnostics = ts.getPreEmitDiagnostics(program);
	assert.equal(diagnostics.length, 0, ts.formatDiagnostics(diagnostics, ts.createCompilerHost({})));
	const checker = program.getTypeChecker();
	const exports = checker.getExportsOfModule(checker.getSymbolAtLocation(program.getSourceFile(file)));
	return { checker, exports: new Map(exports.map((s) => [s.name, s])) };
}

test('every value index.d.ts declares exists, and every export of index.js is declared', () => {
	const { checker, exports } = declarations();
	const values = [...exports.values()].filter((s) => s.flags & ts.SymbolFlags.Value);
	assert.ok(values.length > 10, `only ${values.length} values declared`);
	for (const s of values) {
		const v = keyward[s.name];
		assert.notEqual(v, undefined, `index.d.ts declares ${s.name}, index.js does not export it`);
		if (s.flags & (ts.SymbolFlags.Class | ts.SymbolFlags.Function)) {
			assert.equal(typeof v, 'function', `${s.name} is declared a class or function`);
		}
	}
	for (const name of Object.keys(keyward)) {
		assert.ok(exports.has(name) && exports.get(name).flags & ts.SymbolFlags.Value, `index.js exports ${name}, index.d.ts does not declare it`);
	}

	for (const cls of ['Client', 'Watch', 'Secret']) {
		const sym = exports.get(cls);
		const instance = checker.getDeclaredTypeOfSymbol(sym);
		for (const m of instance.getProperties()) {
			if (!(m.flags & ts.SymbolFlags.Method) || m.declarations.some((d) => ts.getCombinedModifierFlags(d) & ts.ModifierFlags.Private)) {
				continue;
			}
			const key = m.name.startsWith('__@') ? Symbol.asyncIterator : m.name;
			assert.equal(typeof keyward[cls].prototype[key], 'function', `${cls}.${m.name} is declared, not implemented`);
		}
		const statics = checker.getTypeOfSymbolAtLocation(sym, sym.valueDeclaration).getProperties();
		for (const m of statics) {
			if (m.flags & ts.SymbolFlags.Method) {
				assert.equal(typeof keyward[cls][m.name], 'function', `static ${cls}.${m.name} is declared, not implemented`);
			}
		}
	}

	const wire = exports.get('wire');
	for (const m of checker.getExportsOfModule(wire)) {
		assert.notEqual(keyward.wire[m.name], undefined, `wire.${m.name} is declared, not implemented`);
	}
});
