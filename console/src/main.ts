import './app.css';
import { mount } from 'svelte';
import App from './App.svelte';

const target = document.getElementById('app');
if (target === null) throw new Error('no #app element');
// The page's own "Loading" line (painted before any script ran) gives way.
target.replaceChildren();
mount(App, { target });
